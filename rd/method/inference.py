"""Inference on a trained RD network: smoothed anomaly maps and image scores."""

from __future__ import annotations

import numpy as np
import torch

from rd.method.anomaly_map import anomaly_maps
from rd.errors import RDError
from rd.method import RD


@torch.no_grad()
def predict(model: RD, images: torch.Tensor, image_size: int, device: torch.device | str,
            batch_size: int = 16) -> np.ndarray:
    """Smoothed anomaly maps (N, H, W) for normalised images (N, 3, H, W)."""
    device = torch.device(device)
    channels_last = device.type == "cuda"
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t, s = model(x)
        out.append(anomaly_maps(t, s, image_size))
    maps = np.concatenate(out)
    if not np.isfinite(maps).all():   # NaN scores would compare as "good" with every threshold
        bad = int((~np.isfinite(maps.reshape(len(maps), -1))).any(axis=1).sum())
        raise RDError(f"The model gave NaN or infinite anomaly maps for {bad} of {len(maps)} image(s).",
                      "check the model (retrain it if its weights diverged) and that the images are ordinary "
                      "8-bit pictures.")
    return maps


@torch.no_grad()
def predict_from_features(model: RD, teacher_features: list[torch.Tensor], image_size: int,
                          batch_size: int = 16) -> np.ndarray:
    """:func:`predict` for images whose teacher features are already computed (in the same
    batches of ``batch_size``): the student and the maps only, the same numbers."""
    out = []
    n = len(teacher_features[0])
    for start in range(0, n, batch_size):
        t = [f[start:start + batch_size] for f in teacher_features]
        out.append(anomaly_maps(t, model.student(t), image_size))
    return np.concatenate(out)


def image_scores(maps: np.ndarray) -> np.ndarray:
    """The image-level anomaly score: the maximum of each map (the paper's choice)."""
    return maps.reshape(len(maps), -1).max(axis=1)
