"""What defines a trained run and how to rebuild it: its config, seeding, teacher fingerprint
and the ``model.pt`` format.

Training writes a run with these pieces and evaluation (and prediction) rebuilds it from them;
both import this module and neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from rd import io
from rd.errors import RDError
from rd.models import RD, build_rd

MODEL_FORMAT = "rd-model/1"


@dataclass
class TrainConfig:
    data_root: str
    category: str
    backbone: str
    dataset: str = "mvtec"
    weights: str = "none"
    projection: bool = False
    student: str = "auto"          # auto | resnet | convnext | a timm ResNet name (its student)
    name: str = ""                 # the backbone's name in the config (default: the timm model)
    setting_name: str = "baseline"
    setting: dict[str, Any] = field(default_factory=dict)
    image_size: int = 256
    epochs: int = 200
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    bf16: bool = False
    eval_every: int = 0
    feature_cache: bool = True

    @property
    def backbone_name(self) -> str:
        """The name runs are filed and compared under (one timm model can serve two entries)."""
        return self.name or self.backbone

    def identity(self) -> str:
        """Hash of everything that changes the result (not device/threads/cache): resume guard."""
        keep = {k: v for k, v in asdict(self).items() if k not in ("device", "threads", "feature_cache")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_seeded(cfg: TrainConfig) -> RD:
    """The run's network, initialised from its seed (teacher included when it is random).

    Evaluation calls this too: a random-init teacher is rebuilt, not stored, and checked by
    fingerprint against the one training used.
    """
    seed_everything(cfg.seed)
    try:
        return build_rd(cfg.backbone, cfg.weights, student=cfg.student, projection=cfg.projection)
    except ValueError as exc:  # an unknown student choice, a backbone without stride-4/8/16 stages
        raise RDError(f"Cannot build the RD network of {cfg.backbone_name} ({cfg.backbone}, student "
                      f"{cfg.student!r}): {exc}.",
                      "set the backbone's student to auto, resnet, convnext or a timm ResNet name, "
                      "or pick another backbone.") from exc


def teacher_fingerprint(model: RD) -> str:
    """A hash of the teacher's tensors: evaluation refuses a teacher that is not the trained one."""
    h = hashlib.sha256()
    for key, t in sorted(model.teacher.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_checkpoint(model: RD, cfg: TrainConfig) -> dict[str, Any]:
    """Student weights + how to rebuild the teacher (config, seed) + the teacher's fingerprint.

    The teacher is not stored: pretrained ones come from their weights, random ones from the
    seed, and the fingerprint proves the rebuilt teacher is the one the student learnt from.
    """
    return {
        "format": MODEL_FORMAT,
        "spec": model.spec.to_dict(),
        "train_config": asdict(cfg),
        "student": model.student_state_dict(),
        "teacher_fingerprint": teacher_fingerprint(model),
    }


def _check_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a model.pt whose layout this version of the code does not know (no KeyError/TypeError)."""
    fix = "use the version of the code that trained it, or retrain with this one."
    missing = [k for k in ("train_config", "student", "teacher_fingerprint") if k not in ckpt]
    cfg = ckpt.get("train_config")
    if missing or not isinstance(cfg, dict):
        raise RDError(f"{path} lacks {', '.join(missing) or 'a train_config mapping'}: "
                      "it was written by another version of the code.", fix)
    known = {f.name for f in fields(TrainConfig)}
    extra, absent = sorted(set(cfg) - known), sorted(known - set(cfg))
    if extra or absent:
        what = "; ".join(p for p in (f"unknown train_config key(s) {', '.join(extra)}" if extra else "",
                                     f"missing train_config key(s) {', '.join(absent)}" if absent else "") if p)
        raise RDError(f"{path} was written by another version of the code ({what}).", fix)


def load_model(path: str | os.PathLike) -> tuple[RD, dict[str, Any]]:
    """Rebuild the trained network from ``model.pt`` and check its teacher is the trained one."""
    ckpt = io.load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        found = ""
        if isinstance(ckpt, dict) and "format" in ckpt:
            found = f" (format {ckpt['format']!r}; this code reads {MODEL_FORMAT!r})"
        raise RDError(f"{path} is not a model written by `python -m rd train`{found}.",
                      "pass the run's model.pt, written by the same version of the code.")
    _check_checkpoint(ckpt, path)
    cfg = ckpt["train_config"]
    model = build_seeded(TrainConfig(**cfg))
    try:
        model.load_student_state_dict(ckpt["student"])
    except RuntimeError as exc:
        raise RDError(f"{path}: {str(exc).splitlines()[0][:200]}.", "use the version of the code that trained it, "
                      "or retrain with this one.") from exc
    if teacher_fingerprint(model) != ckpt["teacher_fingerprint"]:
        raise RDError(f"The teacher rebuilt for {path} ({cfg['backbone']}, weights={cfg['weights']}, "
                      f"seed {cfg['seed']}) differs from the one the student was trained against.",
                      "evaluate with the same weights file/cache and the same torch/timm versions as "
                      "training, or retrain.")
    model.eval()
    return model, cfg
