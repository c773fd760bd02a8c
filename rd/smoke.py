"""The protocol's step 2: check a backbone's RD shapes and parameters before any training.

Builds the network with the weights training will use (so unavailable weights fail here,
in seconds, not after a queue of training jobs), runs a forward pass per image size and
checks: three teacher and student maps, pairwise equal shapes, strides 4/8/16, a teacher
with zero trainable parameters that stays in eval mode when RD is put in train mode.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from rd import io
from rd.errors import RDError
from rd.models import build_rd, count_params


def check_shapes(model: torch.nn.Module, image_size: int) -> list[list[int]]:
    x = torch.randn(2, 3, image_size, image_size)
    model.train()
    with torch.no_grad():
        t, s = model(x)
    problems = []
    if model.teacher.training:
        problems.append("teacher left eval mode when RD was put in train mode")
    if len(t) != 3 or len(s) != 3:
        problems.append(f"expected 3 teacher and 3 student maps, got {len(t)} and {len(s)}")
    for i, (a, b, stride) in enumerate(zip(t, s, (4, 8, 16))):
        want = image_size // stride
        if a.shape != b.shape:
            problems.append(f"stage {i}: teacher {tuple(a.shape)} != student {tuple(b.shape)}")
        if a.shape[-2:] != (want, want):
            problems.append(f"stage {i}: spatial {tuple(a.shape[-2:])}, expected {want}x{want} (stride {stride})")
    model.eval()
    if problems:
        raise RDError(f"Smoke test failed at {image_size} px: " + "; ".join(problems) + ".",
                      "this backbone cannot be used as an RD teacher as configured; pick another or report a bug.")
    return [list(a.shape[1:]) for a in t]


def smoke_test(backbone: str, *, weights: str = "none", image_sizes: Sequence[int] = (128, 256),
               projection: bool = False, student: str = "auto",
               out: str | os.PathLike | None = None) -> dict[str, Any]:
    for size in image_sizes:
        if size % 32:
            raise RDError(f"image size {size} is not a multiple of 32.", "RD needs stride-32 embeddings; use e.g. 128 or 256.")
    torch.manual_seed(0)
    try:
        model = build_rd(backbone, weights, student=student, projection=projection)
    except ValueError as exc:  # an unknown student choice
        raise RDError(f"Cannot build {backbone} with student {student!r}: {exc}.",
                      "set the backbone's student to auto, resnet, convnext or a timm ResNet name.") from exc
    trainable_teacher = count_params(model.teacher, trainable_only=True)
    if trainable_teacher:
        raise RDError(f"Teacher of {backbone} has {trainable_teacher} trainable parameters.", "this is a bug: report it.")
    result = {
        "backbone": backbone, "weights": weights, "projection": projection, "ok": True,
        "teacher_weights": model.teacher_weights.to_dict() if model.teacher_weights else None,
        "channels": list(model.teacher.channels), "strides": list(model.teacher.strides),
        "student": model.spec.to_dict()["student"],
        "shapes": {str(size): check_shapes(model, size) for size in image_sizes},
        "params": {"teacher": count_params(model.teacher), "teacher_trainable": trainable_teacher,
                   "bottleneck": count_params(model.bottleneck), "decoder": count_params(model.decoder),
                   "student": count_params(model.bottleneck) + count_params(model.decoder)},
    }
    if out is not None:
        io.write_json(out, result)
    return result
