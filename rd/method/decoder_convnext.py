"""ConvNeXt student decoder, built from the teacher's channel triple.

Each decoder stage mirrors a ConvNeXt downsampling stage: LayerNorm, a stride-2
``ConvTranspose2d(k=2)`` (the transpose of ConvNeXt's 2x2/s2 patchify conv), then timm's own
ConvNeXt blocks. Because it needs only the three channel counts it is also the generic decoder
for teachers of other families (EfficientNet, ...). Stage depths follow the official RD4AD
convention used for ResNets: the i-th decoder stage gets the teacher's i-th stage depth.

Initialisation: ConvNeXt's own, not the ResNet student's — truncated-normal weights (std 0.02),
zero biases, layer scale 1e-6 (``rd.method.init.trunc_normal_init``), so a ConvNeXt student
starts as ConvNeXt networks are trained from.
"""

from __future__ import annotations

from typing import Sequence

import torch
from timm.layers import LayerNorm2d
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from rd.method.init import trunc_normal_init


class DeConvNeXtStage(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, depth: int) -> None:
        super().__init__()
        self.upsample = nn.Sequential(
            LayerNorm2d(in_chs), nn.ConvTranspose2d(in_chs, out_chs, kernel_size=2, stride=2)
        )
        self.blocks = nn.Sequential(*(ConvNeXtBlock(out_chs, ls_init_value=1e-6) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.upsample(x))


class DeConvNeXt(nn.Module):
    """Decoder from the stride-32 OCBE embedding (2 x c3 channels) to strides 4/8/16."""

    def __init__(self, channels: Sequence[int], depths: Sequence[int] = (2, 2, 2)) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.layer1 = DeConvNeXtStage(2 * c3, c3, depths[0])
        self.layer2 = DeConvNeXtStage(c3, c2, depths[1])
        self.layer3 = DeConvNeXtStage(c2, c1, depths[2])
        self.apply(trunc_normal_init)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f16 = self.layer1(x)
        f8 = self.layer2(f16)
        f4 = self.layer3(f8)
        return [f4, f8, f16]
