"""The frozen teacher: any timm backbone as a three-stage feature extractor.

RD compares student and teacher at strides 4/8/16. timm's ``features_only`` gives us the
stages without touching the network's structure; the teacher is then frozen (no parameter
requires grad) and pinned to eval mode so BatchNorm statistics never drift, even when the
surrounding RD module is switched to train mode.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

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


class FrozenProjection(nn.Module):
    """1x1 conv + BN per stage mapping teacher channels to target channels (frozen).

    A way to give a ConvNeXt teacher ResNet-shaped features (``projection: true``). It
    belongs to the teacher and is frozen with it: a trainable projection would let teacher
    and student collapse to the same trivial features and the distillation loss to zero.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm2d(c_out))
            for c_in, c_out in zip(in_channels, out_channels)
        )
        for stage in self.stages:
            nn.init.kaiming_normal_(stage[0].weight, mode="fan_in", nonlinearity="linear")

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [stage(f) for stage, f in zip(self.stages, feats)]


class Teacher(nn.Module):
    """Frozen timm feature extractor returning the stride-4/8/16 feature maps."""

    def __init__(self, backbone: nn.Module, projection: Sequence[int] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        native = tuple(backbone.feature_info.channels())
        self.native_channels: tuple[int, ...] = native
        self.projection = FrozenProjection(native, projection) if projection else None
        self.channels: tuple[int, ...] = tuple(projection) if projection else native
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
