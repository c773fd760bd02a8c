"""RD's distillation loss (Deng & Li 2022, eq. 2-3)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def cosine_distillation_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per stage 1 - cosine similarity of the flattened (C*H*W) maps, batch mean, summed over stages.

    Computed in fp32 whatever the autocast dtype: the cosine of near-identical long vectors
    is where bf16 rounding would bite.
    """
    total = torch.zeros((), device=student[0].device, dtype=torch.float32)
    for t, s in zip(teacher, student):
        cos = F.cosine_similarity(t.float().flatten(1), s.float().flatten(1), dim=1)
        total = total + (1.0 - cos).mean()
    return total
