"""Student initialisations, one per family, as the reference code of each family does it.

* ResNet family (OCBE's fusion convs and ResNet OCE, the ResNet decoder): the official RD4AD
  code runs torchvision ResNet's loop over its modules — every ``nn.Conv2d`` gets
  ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (weight std sqrt(2 / (C_out·kh·kw))),
  every BatchNorm/GroupNorm weight 1 and bias 0. ``ConvTranspose2d`` is not an ``nn.Conv2d``,
  so the decoder's upsampling layers keep PyTorch's default, as in the official code. With
  BatchNorm after every conv and Adam, a different conv scale trains at an effectively
  different learning rate, so this is part of the paper's baseline.
* ConvNeXt family: timm's ConvNeXt initialisation (truncated normal, std 0.02, zero bias; the
  blocks' layer scale starts at 1e-6), the initialisation ConvNeXt is trained from.
"""

from __future__ import annotations

from torch import nn


def rd4ad_init(module: nn.Module) -> None:
    """The official RD4AD / torchvision ResNet initialisation, applied to every submodule."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def trunc_normal_init(module: nn.Module) -> None:
    """timm's ConvNeXt initialisation: truncated-normal weights (std 0.02), zero bias.

    Used with ``module.apply``; layer scales are set by the blocks themselves.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
