"""The frozen teacher: any timm backbone as a three-stage feature extractor.

RD compares student and teacher at strides 4/8/16. timm's ``features_only`` gives us the
stages without touching the network's structure; the teacher is then frozen (no parameter
requires grad) and pinned to eval mode so BatchNorm statistics never drift, even when the
surrounding RD module is switched to train mode.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rd.params import PROJECTION_DEFAULT

RD_STRIDES = (4, 8, 16)
RESNET18_CHANNELS = (64, 128, 256)


def rd_out_indices(feature_info: Sequence[dict]) -> tuple[int, int, int]:
    """Indices of the stride-4/8/16 stages in a timm ``feature_info`` list.

    For several stages at one stride (rare), the deepest wins: it carries the most context.
    For ResNets this is (1, 2, 3), for ConvNeXt (0, 1, 2), for EfficientNet (1, 2, 3).
    """
    picked = {}
    for i, info in enumerate(feature_info):
        if info["reduction"] in RD_STRIDES:
            picked[info["reduction"]] = i
    missing = [s for s in RD_STRIDES if s not in picked]
    if missing:
        strides = [info["reduction"] for info in feature_info]
        raise ValueError(f"backbone has no feature stage at stride(s) {missing} (it has {strides})")
    return tuple(picked[s] for s in RD_STRIDES)  # type: ignore[return-value]


PROJECTION_SEED = 0  # the fixed seed of the frozen projections (recorded in train.json)


def orthonormal_matrix(c_out: int, c_in: int, seed: int) -> torch.Tensor:
    """A ``c_out x c_in`` matrix with orthonormal columns: Q of a QR of a seeded Gaussian.

    Computed in float64 on the CPU (the same on every machine), so QᵀQ = I to float32 precision.
    """
    if c_out < c_in:
        raise ValueError(f"an orthonormal embedding cannot reduce {c_in} channels to {c_out}")
    g = torch.Generator().manual_seed(seed)
    gauss = torch.randn(c_out, c_in, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(gauss, mode="reduced")
    return q.to(torch.float32)


class OrthonormalProjection(nn.Module):
    """``projection: orthonormal``: a frozen 1x1 embedding per stage with orthonormal columns.

    WᵀW = I preserves inner products and norms of the teacher's channel vectors, so every cosine
    between teacher features (and hence what the loss asks of the student) is unchanged; only the
    width grows to the student's. No bias, no BatchNorm, no parameter: the weights are buffers.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], seed: int = PROJECTION_SEED) -> None:
        super().__init__()
        self.seed = seed
        for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels)):
            w = orthonormal_matrix(c_out, c_in, seed + i) if not torch.empty(0).is_meta else \
                torch.empty(c_out, c_in)
            self.register_buffer(f"weight{i}", w[:, :, None, None].contiguous())

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [F.conv2d(f, getattr(self, f"weight{i}")) for i, f in enumerate(feats)]


class GuideProjection(nn.Module):
    """``projection: guide``: the originally proposed frozen 1x1 conv (no bias) + BatchNorm + ReLU per
    stage to ResNet-18's 64/128/256. Its ReLU makes the teacher's features non-negative.

    Frozen with the teacher (a trainable projection would let teacher and student collapse to
    the same trivial features); its convs are drawn from the fixed projection seed.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], seed: int = PROJECTION_SEED) -> None:
        super().__init__()
        self.seed = seed
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out in zip(in_channels, out_channels)
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for stage in self.stages:
                nn.init.kaiming_normal_(stage[0].weight, mode="fan_in", nonlinearity="relu")

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [stage(f) for stage, f in zip(self.stages, feats)]


class Teacher(nn.Module):
    """Frozen timm feature extractor returning the stride-4/8/16 feature maps."""

    def __init__(self, backbone: nn.Module, projection: str = PROJECTION_DEFAULT,
                 projection_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        native = tuple(backbone.feature_info.channels())
        self.native_channels: tuple[int, ...] = native
        self.projection: nn.Module | None = None
        if projection == "orthonormal":
            self.projection = OrthonormalProjection(native, projection_channels)
        elif projection == "guide":
            self.projection = GuideProjection(native, projection_channels)
        elif projection != PROJECTION_DEFAULT:
            raise ValueError(f"unknown projection {projection!r}: use none, orthonormal or guide")
        self.channels: tuple[int, ...] = tuple(projection_channels) if self.projection is not None else native
        self.strides: tuple[int, ...] = tuple(backbone.feature_info.reduction())
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Teacher":
        """Stay in eval mode whatever the caller asks: the teacher never trains."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(x)
        if self.projection is not None:
            feats = self.projection(feats)
        return list(feats)
