"""Named training settings: optimizer and learning-rate schedule from a plain dict.

``baseline`` is the paper: Adam, lr 0.005, betas (0.5, 0.999), constant lr. ``tuned`` is the
ConvNeXt recipe: AdamW, weight decay 0.05, cosine decay with linear warmup. The schedule is
stepped per optimisation step so short runs still see the whole curve.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from rd.params import SETTING_RULES, check_setting

SETTING_KEYS = set(SETTING_RULES)
BASELINE = {"optimizer": "adam", "lr": 0.005, "betas": [0.5, 0.999], "weight_decay": 0.0, "schedule": "constant"}


def _check(setting: dict[str, Any], epochs: int | None = None) -> dict[str, Any]:
    """The setting checked by the shared parameter rules (rd.params), baseline keys filled in."""
    return check_setting(setting, epochs)


def make_optimizer(params: Iterable[torch.nn.Parameter], setting: dict[str, Any]) -> torch.optim.Optimizer:
    """The setting's optimizer, in torch's fused form (one kernel for all parameters).

    Fused is the same update rule as the default implementation and deterministic run to run,
    but rounds differently in the last bits; it makes a CPU training step ~5 % faster
    (benchmarks/RESULTS.md).
    """
    s = _check(setting)
    params = list(params)
    if s["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"],
                                fused=True)
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"],
                                 fused=True)
    return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"], fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, setting: dict[str, Any], steps_per_epoch: int,
                   epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: 1 (constant) or linear warmup then cosine decay to ``min_lr``."""
    s = _check(setting, epochs)
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
