"""Decision thresholds for new images: from good images only, from the test set, or given.

The benchmark's F1max threshold is chosen on the labelled test set, so it is optimistic for
new images. The default for prediction is instead taken from good images only: the 0.99
quantile of the image scores of the run's held-out good images (``rd.data.holdout``: a fixed
part of train/good that training never saw, or the dataset's own validation images), computed
by ``evaluate`` and stored in the run as ``threshold.json`` with where the scores came from
(``threshold_source``). With ``validation_fraction`` 0 (the paper's split) nothing is held
out and the training images are used instead: they were seen during training, so their scores
run lower than those of unseen good images, and new good images get more false alarms than 1
in 100. A number can always be given instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rd.errors import RDError
from rd.files import read_json_object

GOOD_QUANTILE = 0.99
THRESHOLD_FILE = "threshold.json"
CHOICES = ("good", "f1max")
#: ``threshold_source`` -> (the images in words, whether training saw them).
GOOD_SOURCES: dict[str, tuple[str, bool]] = {
    "held_out": ("held-out good images", False),
    "validation_split": ("the dataset's validation good images", False),
    "training": ("train/good", True),
}


def source_text(threshold_source: str, n_images: int) -> str:
    """One line on the threshold's images, e.g. 'held-out good images (n=10, not seen in training)'."""
    what, seen = GOOD_SOURCES[threshold_source]
    if seen:
        return (f"{what} (n={n_images}, seen in training: expect more false alarms on new good images "
                "than the quantile says)")
    return f"{what} (n={n_images}, not seen in training)"


@dataclass(frozen=True)
class Threshold:
    """A decision threshold (anomalous when score >= value) and where it came from."""

    value: float
    source: str      # one line for predictions.csv and the export's JSON
    choice: str      # good | f1max | value


def good_threshold(scores: np.ndarray, threshold_source: str, quantile: float = GOOD_QUANTILE) -> dict[str, Any]:
    """The ``threshold.json`` record for the image scores of good images; ``threshold_source``
    (held_out | validation_split | training) says which good images they are."""
    if threshold_source not in GOOD_SOURCES:
        raise ValueError(f"threshold_source must be one of {', '.join(GOOD_SOURCES)}, got {threshold_source!r}")
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).all():
        raise RDError("Cannot derive a threshold from good images: no scores or non-finite scores.",
                      "check the run's good images and model.")
    return {"value": float(np.quantile(s, quantile)), "quantile": quantile, "n_images": int(s.size),
            "threshold_source": threshold_source, "seen_in_training": GOOD_SOURCES[threshold_source][1],
            "source": source_text(threshold_source, int(s.size)),
            "score_max": float(s.max()), "score_mean": float(s.mean())}


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    return read_json_object(path, what, fix, damaged_fix=fix)


def resolve_threshold(choice: str | float, run_dir: str | os.PathLike) -> Threshold:
    """``good`` (threshold.json), ``f1max`` (metrics.json, optimistic) or a number."""
    run_dir = Path(run_dir)
    if not isinstance(choice, str):
        value = float(choice)
    elif choice in CHOICES:
        value = None
    else:
        try:
            value = float(choice)
        except ValueError:
            raise RDError(f"Unknown threshold {choice!r}.",
                          "use good (default: from held-out good images), f1max (the test set's, optimistic) "
                          "or a number.") from None
    if value is not None:
        if not math.isfinite(value):
            raise RDError(f"Threshold {choice!r} is not a finite number.", "give a finite number, good or f1max.")
        return Threshold(value, "user", "value")
    rerun = (f"rerun `python -m rd evaluate` for the run in {run_dir} (it writes both files), "
             "or pass --threshold with a number")
    if choice == "good":
        data = _read_json(run_dir / THRESHOLD_FILE, "Threshold file", rerun + " or f1max.")
        try:
            value, q, n = float(data["value"]), float(data["quantile"]), int(data["n_images"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RDError(f"Threshold file {run_dir / THRESHOLD_FILE} lacks value/quantile/n_images.",
                          rerun + " or f1max.") from exc
        _check_read(value, run_dir / THRESHOLD_FILE, rerun + " or f1max.")
        # threshold.json files written before held-out images existed came from the training images
        source = data.get("threshold_source", "training")
        if source not in GOOD_SOURCES:
            raise RDError(f"Threshold file {run_dir / THRESHOLD_FILE} has an unknown threshold_source {source!r}.",
                          rerun + " or f1max.")
        return Threshold(value, f"good: {q:g} score quantile of {source_text(source, n)}", "good")
    data = _read_json(run_dir / "metrics.json", "Metrics file", rerun + " or good.")
    try:
        value = float(data["image_f1max_threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RDError(f"Metrics file {run_dir / 'metrics.json'} has no image_f1max_threshold.",
                      rerun + " or good.") from exc
    _check_read(value, run_dir / "metrics.json", rerun + " or good.")
    return Threshold(value, "f1max: chosen on the labelled test set (optimistic)", "f1max")


def _check_read(value: float, path: Path, fix: str) -> None:
    """A threshold read back must be a finite number: NaN would make every image "good"."""
    if not math.isfinite(value):
        raise RDError(f"The threshold in {path} is {value} (not a finite number): the file is damaged or was "
                      "edited.", fix)
