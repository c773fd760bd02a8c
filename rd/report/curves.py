"""Collect the curves the report draws: training loss and test metrics per epoch (history.csv)
and ROC / PRO curves (curves.json), per arm and per (category, seed).

Collection is kept apart from drawing (``rd.report.figures``) so that the data behind a
figure can be checked without matplotlib. Every curve is put on one shared x grid (epochs
1..max, or a fixed FPR grid) so that seeds and categories can be averaged point by point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rd.report.inputs import Run

Key = tuple[str, int]  # (category, seed)
EVAL_METRICS = ("image_auroc", "pixel_auroc")


@dataclass(frozen=True)
class CurveSpec:
    """One ROC/PRO curve kind: its curves.json key, x/y keys, common x grid and labels."""

    name: str
    x_key: str
    y_key: str
    grid: np.ndarray
    title: str
    x_label: str
    y_label: str


CURVE_SPECS = (
    CurveSpec("image_roc", "fpr", "tpr", np.linspace(0, 1, 201), "image ROC", "FPR", "TPR"),
    CurveSpec("pixel_roc", "fpr", "tpr", np.linspace(0, 1, 201), "pixel ROC", "FPR", "TPR"),
    CurveSpec("pro", "fpr", "pro", np.linspace(0, 0.3, 151), "PRO (FPR ≤ 0.3)", "FPR", "PRO"),
)


@dataclass
class CurveData:
    """Curves on common grids: ``loss[arm][(category, seed)]`` and
    ``eval_metrics[metric][arm][(category, seed)]`` on ``epochs`` (NaN where an epoch has no
    value), ``roc_pro[spec name][arm][(category, seed)]`` on that spec's grid."""

    epochs: np.ndarray
    loss: dict[str, dict[Key, np.ndarray]] = field(default_factory=dict)
    eval_metrics: dict[str, dict[str, dict[Key, np.ndarray]]] = field(default_factory=dict)
    roc_pro: dict[str, dict[str, dict[Key, np.ndarray]]] = field(default_factory=dict)

    @property
    def has_loss(self) -> bool:
        return any(self.loss.values())

    @property
    def has_eval_metrics(self) -> bool:
        return any(per_arm for by_arm in self.eval_metrics.values() for per_arm in by_arm.values())

    @property
    def has_roc_pro(self) -> bool:
        return any(per_arm for by_arm in self.roc_pro.values() for per_arm in by_arm.values())


def interp_curve(curve: dict, x_key: str, y_key: str, grid: np.ndarray) -> np.ndarray | None:
    """One curve resampled on ``grid``; None when the curve is malformed.

    A PRO curve stops at its FPR limit, so beyond its last point it is NaN rather than
    extended; ROC curves end at (1, 1) and are extended with their last value.
    """
    try:
        x = np.asarray(curve[x_key], dtype=float)
        y = np.asarray(curve[y_key], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if x.size < 2 or x.size != y.size:
        return None
    order = np.argsort(x, kind="stable")
    return np.interp(grid, x[order], y[order], right=np.nan if x_key == "fpr" and y_key == "pro" else y[order][-1])


def _on_epochs(index: np.ndarray, values: np.ndarray, max_epoch: int) -> np.ndarray:
    """Values indexed by epoch number -> an array over epochs 1..max_epoch, NaN where absent."""
    out = np.full(max_epoch, np.nan)
    idx = np.asarray(index, dtype=float)
    ok = (idx >= 1) & (idx <= max_epoch) & (idx == np.round(idx))
    out[idx[ok].astype(int) - 1] = np.asarray(values, dtype=float)[ok]
    return out


def collect_curves(runs: Sequence[Run], arms: Sequence[str]) -> CurveData:
    """Read every run's history and ROC/PRO curves onto common grids."""
    import pandas as pd

    histories: dict[str, dict[Key, tuple]] = {a: {} for a in arms}
    evals: dict[str, dict[str, dict[Key, tuple]]] = {m: {a: {} for a in arms} for m in EVAL_METRICS}
    max_epoch = 0
    for run in runs:
        arm = run.row["arm"]
        if run.history is None or arm not in histories:
            continue
        history = run.history.sort_values("epoch")
        max_epoch = max(max_epoch, int(history["epoch"].max()))
        key = (run.row["category"], int(run.row["seed"]))
        loss = history.set_index("epoch")["loss"]
        histories[arm][key] = (np.asarray(loss.index), loss.to_numpy())
        for metric in EVAL_METRICS:
            if metric in history.columns:
                values = pd.to_numeric(history[metric], errors="coerce")
                if values.notna().any():
                    series = pd.Series(values.to_numpy(), index=history["epoch"].to_numpy()).dropna()
                    evals[metric][arm][key] = (np.asarray(series.index), series.to_numpy())

    data = CurveData(epochs=np.arange(1, max_epoch + 1))
    data.loss = {a: {k: _on_epochs(i, v, max_epoch) for k, (i, v) in histories[a].items()} for a in arms}
    data.eval_metrics = {m: {a: {k: _on_epochs(i, v, max_epoch) for k, (i, v) in evals[m][a].items()}
                             for a in arms} for m in EVAL_METRICS}

    data.roc_pro = {spec.name: {a: {} for a in arms} for spec in CURVE_SPECS}
    for run in runs:
        if run.row["arm"] not in arms:
            continue
        for spec in CURVE_SPECS:
            curve = run.curves.get(spec.name) if isinstance(run.curves, dict) else None
            if isinstance(curve, dict):
                y = interp_curve(curve, spec.x_key, spec.y_key, spec.grid)
                if y is not None:
                    data.roc_pro[spec.name][run.row["arm"]][(run.row["category"], int(run.row["seed"]))] = y
    return data
