"""What the runs of one arm recorded, as the fairness audit compares it (``arm_facts``).

Each fact is a display string built from the set of values the arm's runs recorded
(train.json, the summary row, scores.csv), so two seeds that disagree show both values
instead of hiding one. A fact no run recorded is "unknown": result folders written before
a key existed must still give a report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from rd.report.formatting import finite, joined
from rd.report.inputs import Run

RANDOM_WEIGHTS = {"none", "random", "scratch", "", "null"}
DEFAULT_LOSS = "RD cosine loss: sum over stages of 1 − cos(teacher, student)"


@dataclass(frozen=True)
class ArmFacts:
    """What the runs of one arm recorded, as display strings (distinct values comma-joined).

    ``test_split``: sha256 over the per-category test-list hashes, "mixed" when seeds of one
    category saw different test lists, None when a run has no scores.csv.
    ``pretraining``: the teacher's resolved pretraining data ("in1k", "in12k", "in22k",
    "other", "none"); "none" for a random teacher even in runs that predate the record;
    "unknown" for a pretrained teacher whose train.json does not say. ``teacher_tag``: the
    resolved weights tag (e.g. "convnext_tiny.fb_in1k"). ``student_params``: the distinct
    trainable-student sizes of the runs (bottleneck + decoder). ``random_teacher_init``: the
    recorded initialisation sentence of a random teacher, None when not recorded.
    """

    arm: str
    backbone: str
    setting: str
    categories: list[str]
    test_split: str | None
    image_size: str
    augmentation: str
    preprocessing: str
    loss: str
    seeds: str
    epochs: str
    steps: str
    batch_size: str
    decoder: str
    weights: str
    random_teacher: bool
    setting_params: str
    teacher_tag: str = "unknown"
    pretraining: str = "unknown"
    weights_sha256: str = "unknown"
    student_family: str = "unknown"
    student_params: tuple[int, ...] = ()
    weight_decay_rule: str = "unknown"
    random_teacher_init: str | None = None
    student_output: str = "unknown"
    student_init_sha256: str = "unknown"
    teacher_recipe: str = "unknown"
    teacher_top1: str = "unknown"
    projection: str = "unknown"


def is_random_weights(weights: Any) -> bool:
    """True for the weights values that mean "randomly initialised teacher"."""
    return weights is None or str(weights).strip().lower() in RANDOM_WEIGHTS


def decoder_family(backbone: str, train: dict) -> str:
    """The decoder train.json names, else the one the backbone name implies (said so)."""
    if train.get("decoder"):
        return str(train["decoder"])
    name = backbone.lower()
    for family in ("convnext", "resnet", "efficientnet", "mobilenet", "vit"):
        if family in name:
            return f"de_{'resnet' if family == 'resnet' else family} (from the backbone name)"
    return "unknown"


def describe_setting(name: str, params: dict) -> str:
    inner = ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in params.items())
    return f"{name}: {inner}" if inner else name


def _test_split(runs: Sequence[Run], categories: list[str]) -> str | None:
    per_category = {}
    for category in categories:
        hashes = {r.test_hash for r in runs if r.row["category"] == category}
        if len(hashes) == 1 and None not in hashes:
            per_category[category] = next(iter(hashes))
        else:
            per_category[category] = "mixed" if len(hashes) > 1 else None
    if any(v is None for v in per_category.values()):
        return None
    if any(v == "mixed" for v in per_category.values()):
        return "mixed"
    return hashlib.sha256(json.dumps(sorted(per_category.items())).encode()).hexdigest()


def arm_facts(arm: str, runs: Sequence[Run], config: dict) -> ArmFacts:
    """Facts of ``arm`` from its runs (other arms' runs in ``runs`` are ignored).

    A fact no train.json recorded falls back to the config's setting (optimiser), to the
    pipeline's fixed choice (loss, preprocessing) or to "unknown".
    """
    rows = [r for r in runs if r.row["arm"] == arm]
    backbone, _, setting = arm.partition("/")
    trains = [r.train for r in rows if r.train]
    setting_params = [t.get("setting_params") or {} for t in trains] or \
        [(config.get("settings") or {}).get(setting, {})]
    categories = sorted({r.row["category"] for r in rows})

    def size_of(run: Run) -> str:
        return str(run.row["image_size"]) if finite(run.row.get("image_size")) else "?"

    return ArmFacts(
        arm=arm, backbone=backbone, setting=setting, categories=categories,
        test_split=_test_split(rows, categories),
        image_size=joined(r.row["image_size"] for r in rows if finite(r.row.get("image_size"))),
        augmentation=joined(t.get("augmentation", s.get("augmentation", "none"))
                            for t, s in zip(trains, setting_params)) if trains else "none",
        preprocessing=joined(t.get("preprocessing") or s.get("preprocessing", "resize to {size} px").replace(
            "{size}", size_of(r)) for t, s in zip(trains or [{}], setting_params) for r in rows[:1]),
        loss=joined(t.get("loss", s.get("loss", DEFAULT_LOSS)) for t, s in zip(trains or [{}], setting_params)),
        seeds=", ".join(str(s) for s in sorted({int(r.row["seed"]) for r in rows})),
        epochs=joined(r.row["epochs"] for r in rows if finite(r.row.get("epochs"))),
        steps=joined(t.get("steps", "?") for t in trains),
        batch_size=joined(t.get("batch_size", config.get("batch_size", "?")) for t in trains),
        decoder=joined(decoder_family(backbone, t) for t in (trains or [{}])),
        weights=joined(r.row.get("weights", "unknown") for r in rows),
        random_teacher=any(is_random_weights(r.row.get("weights")) or _teacher(r.train).get("tag") == "random"
                           for r in rows),
        setting_params=joined(describe_setting(setting, s) for s in setting_params),
        teacher_tag=joined(_teacher(r.train).get("tag") for r in rows if _teacher(r.train).get("tag")),
        pretraining=joined(run_pretraining(r) for r in rows),
        weights_sha256=joined(_teacher(r.train).get("weights_sha256") or "none" for r in rows
                              if "weights_sha256" in _teacher(r.train)),
        student_family=joined(t["student_family"] for t in trains if t.get("student_family")),
        student_params=tuple(sorted({v for v in (_student_params(r) for r in rows) if v is not None})),
        weight_decay_rule=joined(t["weight_decay_rule"] for t in trains if t.get("weight_decay_rule")),
        random_teacher_init=", ".join(sorted({str(t["random_teacher_init"]) for t in trains
                                              if t.get("random_teacher_init")})) or None,
        student_output=recorded(rows, "student_output"),
        student_init_sha256=recorded(rows, "student_init_sha256"),
        teacher_recipe=recorded(rows, "teacher_recipe"),
        teacher_top1=recorded(rows, "teacher_top1", _top1_text),
        projection=recorded(rows, "projection", _projection_text),
    )


def _projection_text(value: Any) -> str:
    """none | orthonormal | guide; a train.json from before the choice recorded a bool."""
    if isinstance(value, bool):
        return "none" if not value else "true (random 1x1 + BatchNorm, before the orthonormal choice)"
    return str(value)


def _top1_text(value: Any) -> str:
    return f"{float(value):.2f} %" if finite(value) else str(value)


def recorded(rows: Sequence[Run], key: str, text=str) -> str:
    """The distinct values of ``key`` over the runs: the summary row's column, else train.json's
    key; "unknown" when no run has it (summary.csv and train.json from before the key existed)."""
    values = []
    for r in rows:
        value = r.row.get(key)
        if value is None or (isinstance(value, float) and value != value) or value == "":
            value = r.train.get(key)
        if value is not None and value != "" and not (isinstance(value, float) and value != value):
            values.append(text(value))
    return joined(values)


def _teacher(train: dict) -> dict:
    teacher = train.get("teacher")
    return teacher if isinstance(teacher, dict) else {}


def run_pretraining(run: Run) -> str:
    """The pretraining data of one run's teacher: recorded in train.json, else "none" for a
    random teacher (no pretraining by definition), else "unknown"."""
    recorded = _teacher(run.train).get("pretraining")
    if recorded:
        return str(recorded)
    return "none" if is_random_weights(run.row.get("weights")) else "unknown"


def _student_params(run: Run) -> int | None:
    params = run.train.get("params")
    value = params.get("student") if isinstance(params, dict) else None
    if not _is_int(value):  # older train.json: the summary's column (filled from complexity)
        value = run.row.get("params_student")
    return value if _is_int(value) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fmt_params(sizes: Sequence[int]) -> str:
    """Parameter counts in millions with one decimal ("15.4 M"), "unknown" when none."""
    return ", ".join(f"{s / 1e6:.1f} M" for s in sizes) if sizes else "unknown"
