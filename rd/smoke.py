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

from rd import files
from rd.errors import RDError
from rd.method import build_rd, count_params
from rd.params import PROJECTION_DEFAULT, STUDENT_DEFAULT, STUDENT_OUTPUT_DEFAULT


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


SIGN_BATCH = 8  # images in the fixed batch on which the teacher's feature signs are measured


@torch.no_grad()
def feature_signs(teacher_feats: Sequence[torch.Tensor]) -> dict[str, list[float] | float]:
    """Per stage, the fraction of negative teacher feature values, and the loss floor of a
    non-negative student: min over s >= 0 of 1 - cos(t, s) over the flattened map is
    1 - ||t+|| / ||t|| (t+ = max(t, 0)); batch mean per stage, summed over stages."""
    negative, floors = [], []
    for t in teacher_feats:
        flat = t.flatten(1).double()
        negative.append(float((flat < 0).double().mean()))
        norm = flat.norm(dim=1).clamp_min(1e-12)
        floors.append(float((1 - flat.clamp_min(0).norm(dim=1) / norm).mean()))
    return {"negative_fraction": negative, "loss_floor_per_stage": floors, "loss_floor": float(sum(floors))}


def _sign_batch(image_size: int, data_root: str | None, dataset: str, category: str | None) -> tuple[torch.Tensor, str]:
    """A fixed batch: SIGN_BATCH training images picked with seed 0, else seeded N(0, 1) noise."""
    if data_root is None:
        g = torch.Generator().manual_seed(0)
        return torch.randn(SIGN_BATCH, 3, image_size, image_size, generator=g), "random normal batch (seed 0)"
    from rd.data import load_split

    images = load_split(data_root, category, "train", image_size, dataset=dataset)["images"]
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(images), generator=g)[:SIGN_BATCH].sort().values
    return images[idx], f"{len(idx)} training images of {dataset}/{category} (picked with seed 0)"


def smoke_test(backbone: str, *, weights: str = "none", image_sizes: Sequence[int] = (128, 256),
               projection: str = PROJECTION_DEFAULT, student: str = STUDENT_DEFAULT,
               student_output: str = STUDENT_OUTPUT_DEFAULT,
               data_root: str | None = None, dataset: str = "mvtec", category: str | None = None,
               out: str | os.PathLike | None = None) -> dict[str, Any]:
    for size in image_sizes:
        if size % 32:
            raise RDError(f"image size {size} is not a multiple of 32.", "RD needs stride-32 embeddings; use e.g. 128 or 256.")
    torch.manual_seed(0)
    try:
        model = build_rd(backbone, weights, student=student, student_output=student_output,
                         projection=projection, init_seed=0)
    except ValueError as exc:  # an unknown student choice, a width-reducing projection
        raise RDError(f"Cannot build {backbone} with student {student!r}, projection {projection}: {exc}.",
                      "set the backbone's student to auto, resnet, convnext or a timm ResNet name (with "
                      "projection true: a ResNet at least as wide as the teacher).") from exc
    trainable_teacher = count_params(model.teacher, trainable_only=True)
    if trainable_teacher:
        raise RDError(f"Teacher of {backbone} has {trainable_teacher} trainable parameters.", "this is a bug: report it.")
    batch, batch_source = _sign_batch(image_sizes[0] if image_sizes else 128, data_root, dataset, category)
    signs = feature_signs(model.teacher(batch))
    result = {
        "backbone": backbone, "weights": weights, "projection": model.spec.projection, "ok": True,
        "student_output": model.spec.student.output,
        **signs, "sign_batch": batch_source,
        "teacher_weights": model.teacher_weights.to_dict() if model.teacher_weights else None,
        "channels": list(model.teacher.channels), "strides": list(model.teacher.strides),
        "student": model.spec.to_dict()["student"],
        "shapes": {str(size): check_shapes(model, size) for size in image_sizes},
        "params": {"teacher": count_params(model.teacher), "teacher_trainable": trainable_teacher,
                   "bottleneck": count_params(model.bottleneck), "decoder": count_params(model.decoder),
                   "student": count_params(model.bottleneck) + count_params(model.decoder)},
    }
    if out is not None:
        files.write_json(out, result)
    return result
