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
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from rd import files
from rd.errors import RDError
from rd.method import RD, build_rd
from rd.params import PROJECTION_DEFAULT, RECIPE, RULES, STUDENT_DEFAULT, STUDENT_OUTPUT_DEFAULT

MODEL_FORMAT = "rd-model/1"


@dataclass
class TrainConfig:
    data_root: str
    category: str
    backbone: str
    dataset: str = "mvtec"
    weights: str = "none"
    projection: str = PROJECTION_DEFAULT  # none | orthonormal | guide
    student: str = STUDENT_DEFAULT  # auto | resnet | convnext | a timm ResNet name (its student)
    student_output: str = STUDENT_OUTPUT_DEFAULT  # relu (official ResNet student) | linear (no final ReLU per stage)
    name: str = ""                 # the backbone's name in the config (default: the timm model)
    setting_name: str = "baseline"
    setting: dict[str, Any] = field(default_factory=dict)
    image_size: int = RECIPE["image_size"]   # the paper's recipe, shared with the CLI defaults
    epochs: int = RECIPE["epochs"]
    batch_size: int = RECIPE["batch_size"]
    seed: int = RECIPE["seed"]
    device: str = RECIPE["device"]
    threads: int = RECIPE["threads"]
    bf16: bool = False
    eval_every: int = 0
    feature_cache: bool = True
    # Held-out good images (rd.data.holdout). 0 (the paper's split) is also what every model.pt
    # written before these keys existed was trained on; the CLI and the workflow default to 0.1.
    validation_fraction: float = 0.0
    data_seed: int = 0             # the dataset seed that picks the held-out images
    # The workflow's learning-rate selection this run's lr came from (rd.lr_select), if any.
    lr_selection: dict[str, Any] | None = None

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
        return build_rd(cfg.backbone, cfg.weights, student=cfg.student, student_output=cfg.student_output,
                        projection=cfg.projection, init_seed=cfg.seed)
    except ValueError as exc:  # an unknown student choice, a backbone without stride-4/8/16 stages
        raise RDError(f"Cannot build the RD network of {cfg.backbone_name} ({cfg.backbone}, student "
                      f"{cfg.student!r}, projection {cfg.projection}): {exc}.",
                      "set the backbone's student to auto, resnet, convnext or a timm ResNet name (with "
                      "projection true: a ResNet at least as wide as the teacher), or pick another backbone.") from exc


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


def load_student(model: RD, state: Any, path: str | os.PathLike) -> None:
    """Load student tensors from ``path`` into ``model``, or one RDError naming the first tensor
    that does not fit (the file belongs to another backbone, student or projection)."""
    backbone = f"the {model.spec.backbone} network"
    fix = "the file belongs to another backbone/student: use that run's config, or delete the file and retrain."
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RDError(f"{path} holds no student tensors.", fix)
    expected = model.student_state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise RDError(f"The student tensors in {path} do not fit {backbone}: {key!r} is missing.", fix)
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise RDError(f"The student tensors in {path} do not fit {backbone}: {key!r} has shape "
                          f"{tuple(state[key].shape)}, the network expects {tuple(tensor.shape)}.", fix)
    extra = [k for k in state if k not in expected]
    if extra:
        raise RDError(f"The student tensors in {path} do not fit {backbone}: it has {extra[0]!r}, "
                      "which the network lacks.", fix)
    bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:   # would give NaN maps, NaN scores and "good" for every image
        raise RDError(f"The student tensors in {path} hold NaN or infinite values ({bad!r}): training diverged "
                      "or the file was damaged.", "delete the file and retrain (a lower learning rate if the loss "
                      "diverged), or pass another run's model.pt.")
    model.load_student_state_dict(state)


def config_from_dict(cfg: Any, path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig stored in a model.pt, or RDError if another version of rd wrote it.

    Keys this version added later take their defaults; a key it does not know, a missing
    required key or a value outside the parameter rules is refused.
    """
    retrain = ("retrain with this version (`python -m rd train`, or rerun the workflow), or use the version "
               "of the code that wrote it.")
    if not isinstance(cfg, dict):
        raise RDError(f"{path} has no training config (found {type(cfg).__name__}).", retrain)
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(cfg) - set(known))
    missing = sorted(k for k, f in known.items() if k not in cfg and f.default is MISSING
                     and f.default_factory is MISSING)
    if unknown or missing:
        what = "; ".join(p for p in (f"keys unknown here: {', '.join(unknown)}" if unknown else "",
                                     f"keys missing: {', '.join(missing)}" if missing else "") if p)
        raise RDError(f"{path} was written by another version of rd ({what}).", retrain)
    if cfg.get("projection") is False:   # written before projection had three values
        cfg = {**cfg, "projection": "none"}
    elif cfg.get("projection") is True:  # the old 1x1+BN projection no longer exists
        raise RDError(f"{path} was trained with the old projection (1x1 conv + BatchNorm), which this "
                      "version no longer builds.", retrain)
    for key in ("image_size", "epochs", "batch_size", "seed"):
        if RULES[key].violation(cfg.get(key, getattr(TrainConfig, key))):
            raise RDError(f"{path} holds an invalid training config ({key}={cfg[key]!r}).", retrain)
    return TrainConfig(**cfg)


def load_model(path: str | os.PathLike) -> tuple[RD, TrainConfig]:
    """Rebuild the trained network from ``model.pt`` (with its TrainConfig) and check its teacher is the trained one."""
    fix = "rerun training for this run (delete the file first) or pass another run's model.pt."
    ckpt = files.load_torch(path, "Model", fix)
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        found = ""
        if isinstance(ckpt, dict) and "format" in ckpt:
            found = f" (format {ckpt['format']!r}; this code reads {MODEL_FORMAT!r})"
        raise RDError(f"{path} is not a model written by `python -m rd train`{found}.",
                      "pass the run's model.pt, written by the same version of the code.")
    lacking = [k for k in ("train_config", "student", "teacher_fingerprint") if k not in ckpt]
    if lacking:
        raise RDError(f"{path} lacks {', '.join(lacking)}: it is damaged or from another version of rd.", fix)
    cfg = config_from_dict(ckpt["train_config"], path)
    model = build_seeded(cfg)
    load_student(model, ckpt["student"], path)
    if teacher_fingerprint(model) != ckpt["teacher_fingerprint"]:
        raise RDError(f"The teacher rebuilt for {path} ({cfg.backbone}, weights={cfg.weights}, "
                      f"seed {cfg.seed}) differs from the one the student was trained against.",
                      "evaluate with the same weights file/cache and the same torch/timm versions as "
                      "training, or retrain.")
    model.eval()
    return model, cfg
