"""The paper's student decoder: ResNet layers 3 -> 1 mirrored, upsampling by transposed convs.

Each layer's first block doubles the resolution with a stride-2 ``ConvTranspose2d(k=2)`` on
both the main path and the residual path (where the encoder would have a stride-2 conv and a
1x1/s2 downsample). Block and layer counts follow the official RD4AD ``de_resnet``: the i-th
decoder layer gets as many blocks as the encoder's i-th layer (resnet18: 2/2/2, wide_resnet50_2:
3/4/6). Outputs come back in encoder order (stride 4, 8, 16). Initialised as the official code
(``rd.method.init.rd4ad_init``).

``output="relu"`` (the official student) ends every output stage in a ReLU, so the student can
only produce non-negative features. ``output="linear"`` drops that final ReLU of the last block
of each stage (the residual sum is returned as is), so it can fit signed teacher features
(ConvNeXt, EfficientNet) as well as post-ReLU ones; it has the same parameters.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rd.method.init import rd4ad_init
from rd.params import STUDENT_OUTPUT_DEFAULT, STUDENT_OUTPUTS


def _deconv2x2(c_in: int, c_out: int, groups: int = 1) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2, groups=groups, bias=False)


def _conv3x3(c_in: int, c_out: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, groups=groups, bias=False)


class _DeBlock(nn.Module):
    """The residual step both blocks share, in the original order: the (upsampled) identity
    first, then the block's own branch, the sum, and the output ReLU that ``relu_out`` drops.
    Subclasses define ``branch`` and register their modules themselves, in the original order
    (the init and the state_dict follow it)."""

    upsample: nn.Module | None
    relu: nn.ReLU

    def __init__(self, relu_out: bool) -> None:
        super().__init__()
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.branch(x)
        out = out + identity
        return self.relu(out) if self.relu_out else out


class DeBasicBlock(_DeBlock):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, upsample: nn.Module | None = None,
                 base_width: int = 64, relu_out: bool = True) -> None:
        super().__init__(relu_out)
        self.conv1 = _deconv2x2(inplanes, planes) if upsample is not None else _conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class DeBottleneck(_DeBlock):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, upsample: nn.Module | None = None,
                 base_width: int = 64, relu_out: bool = True) -> None:
        super().__init__(relu_out)
        width = int(planes * (base_width / 64.0))
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _deconv2x2(width, width) if upsample is not None else _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _de_layer(block_cls: type, inplanes: int, out_chs: int, depth: int, base_width: int,
              relu_out: bool = True) -> nn.Sequential:
    planes = out_chs // block_cls.expansion
    upsample = nn.Sequential(_deconv2x2(inplanes, out_chs), nn.BatchNorm2d(out_chs))
    # only the stage's last block (its output) loses the ReLU under output="linear"
    blocks = [block_cls(inplanes, planes, upsample=upsample, base_width=base_width, relu_out=relu_out or depth > 1)]
    blocks += [block_cls(out_chs, planes, base_width=base_width, relu_out=relu_out or i < depth - 1)
               for i in range(1, depth)]
    return nn.Sequential(*blocks)


class DeResNet(nn.Module):
    """Decoder from the stride-32 OCBE embedding back to the teacher's three stages."""

    def __init__(self, channels: Sequence[int], block: str = "basic",
                 depths: Sequence[int] = (2, 2, 2), base_width: int = 64, output: str = STUDENT_OUTPUT_DEFAULT) -> None:
        super().__init__()
        if output not in STUDENT_OUTPUTS:
            raise ValueError(f"unknown student output {output!r}: use relu or linear")
        r = output == "relu"   # the official student: every stage output through a ReLU
        block_cls = DeBasicBlock if block == "basic" else DeBottleneck
        c1, c2, c3 = channels
        self.layer1 = _de_layer(block_cls, 2 * c3, c3, depths[0], base_width, r)  # stride 32 -> 16
        self.layer2 = _de_layer(block_cls, c3, c2, depths[1], base_width, r)      # 16 -> 8
        self.layer3 = _de_layer(block_cls, c2, c1, depths[2], base_width, r)      # 8 -> 4
        rd4ad_init(self)  # the official code's loop; its ConvTranspose2d layers keep the default

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f16 = self.layer1(x)
        f8 = self.layer2(f16)
        f4 = self.layer3(f8)
        return [f4, f8, f16]
