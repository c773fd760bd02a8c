"""Anomaly maps from teacher/student disagreement.

Per stage the map is 1 - cosine similarity over channels, bilinearly upsampled to the image
size (``align_corners=True`` as in the official code) and combined over stages ("add" as in
the paper, or "mul"), then smoothed with a Gaussian of sigma 4 at 256 px, scaled with the
resolution so a run at 128 px smooths the same physical extent. Image score = max of the map.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

SIGMA_AT_256 = 4.0


def gaussian_sigma(image_size: int) -> float:
    return SIGMA_AT_256 * image_size / 256.0


@torch.no_grad()
def raw_anomaly_map(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], image_size: int,
                    mode: str = "add") -> torch.Tensor:
    """(N, H, W) map before smoothing."""
    out = None
    for t, s in zip(teacher, student):
        d = 1.0 - F.cosine_similarity(t.float(), s.float(), dim=1)
        d = F.interpolate(d.unsqueeze(1), size=(image_size, image_size), mode="bilinear", align_corners=True)[:, 0]
        if out is None:
            out = d
        elif mode == "add":
            out = out + d
        elif mode == "mul":
            out = out * d
        else:
            raise ValueError(f"unknown anomaly-map mode {mode!r}: use add or mul")
    assert out is not None
    return out


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each map separately (scipy's defaults, as the official code)."""
    return np.stack([gaussian_filter(m, sigma=sigma) for m in maps]).astype(np.float32, copy=False)


def anomaly_maps(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], image_size: int,
                 mode: str = "add") -> np.ndarray:
    """Smoothed (N, H, W) float32 anomaly maps."""
    raw = raw_anomaly_map(teacher, student, image_size, mode).cpu().numpy()
    return smooth(raw, gaussian_sigma(image_size))
