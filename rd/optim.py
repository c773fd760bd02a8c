"""Named training settings: optimizer and learning-rate schedule from a plain dict.

``baseline`` is the paper: Adam, lr 0.005, betas (0.5, 0.999), constant lr. ``tuned`` is the
ConvNeXt recipe: AdamW, weight decay 0.05, cosine decay with linear warmup. The schedule is
stepped per optimisation step so short runs still see the whole curve.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rd.params import BASELINE, check_setting

__all__ = ["BASELINE", "make_optimizer", "make_scheduler", "weight_decay_rule"]


def weight_decay_rule(setting: dict[str, Any]) -> str:
    """In words, which parameters the setting decays (recorded in train.json, shown by the audit)."""
    s = check_setting(setting)
    if not s["weight_decay"]:
        return "no weight decay"
    return (f"weight decay {s['weight_decay']:g} on weights with ndim >= 2; none on biases and 1-D parameters "
            "(norm weights, layer-scale gammas), as the ConvNeXt recipe (timm param_groups_weight_decay)")


def make_optimizer(student: torch.nn.Module, setting: dict[str, Any]) -> torch.optim.Optimizer:
    """The setting's optimizer over the trainable parameters of ``student``.

    Weight decay is grouped by timm's ``param_groups_weight_decay``: biases and 1-D parameters
    (norm weights, ConvNeXt layer-scale gammas) are exempt, as in the ConvNeXt recipe. Fused is
    the same update rule as the default implementation and deterministic run to run, but rounds
    differently in the last bits; it makes a CPU training step ~5 % faster
    (benchmarks/RESULTS.md).
    """
    from timm.optim import param_groups_weight_decay

    s = check_setting(setting)
    groups = param_groups_weight_decay(student, weight_decay=s["weight_decay"])
    if s["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=s["lr"], betas=tuple(s["betas"]), fused=True)
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=s["lr"], betas=tuple(s["betas"]), fused=True)
    return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"], fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, setting: dict[str, Any], steps_per_epoch: int,
                   epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: 1 (constant) or linear warmup then cosine decay to ``min_lr``."""
    s = check_setting(setting, epochs)
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(round(s["warmup_epochs"] * steps_per_epoch)))
    floor = s["min_lr"] / s["lr"]

    def factor(step: int) -> float:
        if s["schedule"] == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
