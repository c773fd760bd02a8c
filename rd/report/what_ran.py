"""The "What ran" facts at the top of the report: dataset, arms, budget, code, devices, compute,
and the protocol deviations a reader comparing with the paper needs to know."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rd.report.formatting import finite, fmt_duration
from rd.report.inputs import Run, dataset_of_config, package_versions


# what still differs from the paper's protocol, and how the statistics are read
PROTOCOL_NOTES = (
    "Ground-truth masks are resized with nearest-neighbour interpolation; the official RD4AD code resizes them "
    "bilinearly and thresholds at 0.5. Nearest keeps the mask binary without choosing a threshold and changes "
    "only boundary pixels.",
    "The Gaussian smoothing of the anomaly map scales with the image size: σ = 4 at 256 px, as in the paper "
    "(σ = 4 · size / 256).",
    "Verdicts only for the primary metric (config primary_metric), with Holm's correction across all its "
    "comparisons in one reading; every other metric is exploratory (estimate and CI, no verdict). No test with "
    "fewer than 5 paired units.",
    "The per-category reading (within one category, across seeds) measures only seed noise on a fixed test set; "
    "categories are the independent units, so conclusions come from the across-categories reading.",
)


def protocol_notes(config: dict) -> list[str]:
    """The fixed notes, plus the deviations this config chose: training on part of train/good
    (``dataset.validation_fraction`` > 0 holds good images out for the threshold)."""
    notes = list(PROTOCOL_NOTES)
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    fraction = dataset.get("validation_fraction")
    if finite(fraction) and float(fraction) > 0:
        notes.insert(0, f"Training used {1 - float(fraction):.0%} of train/good: {float(fraction):.0%} is held out "
                        "(the same images for every arm) to set the predict threshold. The paper trains on all of "
                        "train/good; dataset.validation_fraction: 0 restores that.")
    return notes


def dataset_details(manifests: Mapping[str, dict]) -> str:
    """Version and split rule from the data manifests, when their reader records them."""
    parts = []
    for key, label in (("dataset_version", "version"), ("split_rule", "split")):
        values = sorted({str(m[key]) for m in manifests.values() if m.get(key)})
        if values:
            parts.append(f"{label}: {'; '.join(values)}")
    return ", ".join(parts)


def _total(summary, column: str) -> float:
    return float(np.nansum(summary[column])) if column in summary else math.nan


def header(summary, config: dict, config_path: Path, runs: Sequence[Run], arms: Sequence[str],
           categories: Sequence[str], git: dict, manifests: Mapping[str, dict]) -> dict:
    """What ran, on what, at what cost; ``categories`` are those with runs."""
    dataset = dataset_of_config(config)
    devices = sorted({str(r.train.get("device")) for r in runs if r.train.get("device")}) or \
        [str(config.get("device", "unknown"))]
    total_train, total_eval = _total(summary, "train_seconds"), _total(summary, "eval_seconds")
    bench_cols = [c for c in ("bench_train_s", "bench_eval_s") if c in summary.columns and summary[c].notna().any()]
    bench_total = float(np.nansum(summary[bench_cols].to_numpy())) if bench_cols else math.nan
    # a hash of the canonical JSON identifies the config whatever its file format or key order
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    return {
        "dataset": dataset["dataset"], "root": dataset["root"], "categories": list(categories),
        "dataset_details": dataset_details(manifests), "protocol_notes": protocol_notes(config),
        "config_categories": dataset["categories"], "arms": list(arms),
        "seeds": sorted({int(s) for s in summary["seed"]}), "n_runs": len(summary),
        "epochs": config.get("epochs"), "batch_size": config.get("batch_size"), "image_size": config.get("image_size"),
        "config_path": str(config_path), "config_hash": config_hash,
        "commit": git["commit"], "dirty": git["dirty"],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "devices": devices, "packages": package_versions(),
        "compute": fmt_duration(total_train + total_eval),
        "compute_detail": f"training {fmt_duration(total_train)} + evaluation {fmt_duration(total_eval)}, "
                          f"summed over {len(summary)} runs",
        "bench_total": fmt_duration(bench_total) if finite(bench_total) else None,
        "host": os.uname().nodename if hasattr(os, "uname") else "unknown",
    }
