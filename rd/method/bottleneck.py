"""OCBE, the paper's "BN layer": multi-scale feature fusion + one-class embedding.

MFF brings the stride-4 and stride-8 teacher features down to stride 16 with 3x3/s2
conv-BN-ReLU, concatenates them with the stride-16 features, and OCE compresses the
3x-wide result into a stride-32 embedding with one backbone-style stage whose first
block has stride 2. The official class also defines ``conv4``/``bn4``, which its forward
never uses; they are left out, so parameter counts match the trained network.

Block type of OCE:
* ResNet teachers: the backbone's own block (BasicBlock x depth for resnet18/34, Bottleneck
  with the backbone's ``width_per_group`` for 50-type and wide ResNets), as in the paper.
* ConvNeXt and other teachers: a ConvNeXt stage (LayerNorm + 2x2/s2 conv downsample, then
  ConvNeXt blocks). It is the ConvNeXt analogue of "one more stage of the backbone" and keeps
  the student one family end to end with the ConvNeXt decoder. The ResNet variant can be
  chosen for any teacher (``student="resnet"``) to hold the student fixed across teachers.

Initialisation (``rd.method.init``): the fusion convs and a ResNet OCE as the official code
(Kaiming normal, fan-out; norms 1/0); a ConvNeXt OCE as timm's ConvNeXt.
"""

from __future__ import annotations

from typing import Sequence

import torch
from timm.layers import LayerNorm, LayerNorm2d
from timm.models.convnext import ConvNeXtStage
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from rd.method.init import rd4ad_init, trunc_normal_init


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def resnet_oce(in_chs: int, out_chs: int, depth: int, block: str, base_width: int = 64) -> nn.Sequential:
    """One ResNet layer, first block stride 2 with a 1x1/s2 downsample (torchvision layout)."""
    block_cls = BasicBlock if block == "basic" else Bottleneck
    planes = out_chs // block_cls.expansion
    downsample = nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(out_chs)
    )
    blocks = [block_cls(in_chs, planes, stride=2, downsample=downsample, base_width=base_width)]
    blocks += [block_cls(out_chs, planes, base_width=base_width) for _ in range(1, depth)]
    return nn.Sequential(*blocks)


def convnext_oce(in_chs: int, out_chs: int, depth: int) -> ConvNeXtStage:
    """A timm ConvNeXt stage (downsample + blocks), initialised as timm's ConvNeXt does."""
    stage = ConvNeXtStage(in_chs, out_chs, stride=2, depth=depth, ls_init_value=1e-6,
                          norm_layer=LayerNorm2d, norm_layer_cl=LayerNorm)
    stage.apply(trunc_normal_init)
    return stage


class OCBE(nn.Module):
    """Fuse three teacher stages (strides 4/8/16) into one stride-32 embedding."""

    def __init__(self, channels: Sequence[int], block: str = "basic", depth: int = 2,
                 base_width: int = 64) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.mff1 = nn.Sequential(_conv_bn_relu(c1, c2), _conv_bn_relu(c2, c3))
        self.mff2 = _conv_bn_relu(c2, c3)
        self.out_channels = 2 * c3
        if block in ("basic", "bottleneck"):
            self.oce = resnet_oce(3 * c3, self.out_channels, depth, block, base_width)
        elif block == "convnext":
            self.oce = convnext_oce(3 * c3, self.out_channels, depth)
        else:
            raise ValueError(f"unknown OCE block type {block!r}: use basic, bottleneck or convnext")
        # The fusion convs are conv-BN-ReLU in every family: the official initialisation. The
        # OCE stage keeps its family's own (a ConvNeXt stage is initialised as ConvNeXt).
        rd4ad_init(self.mff1)
        rd4ad_init(self.mff2)
        if block != "convnext":
            rd4ad_init(self.oce)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        fused = torch.cat([self.mff1(feats[0]), self.mff2(feats[1]), feats[2]], dim=1)
        return self.oce(fused)
