"""All drawing of the report: matplotlib figures and the failure-case thumbnails, as PNG bytes.

Figures are drawn on ``Figure`` objects with the Agg canvas (no pyplot state, safe in a
worker process) and kept small (dpi 85) so the HTML stays a few MB at MVTec scale
(15 categories x 4 arms x 5 seeds). PNGs carry no "Software" metadata, so the same data gives
byte-identical files. This module only draws; what to draw is collected elsewhere
(``rd.report.curves``, ``rd.report.tables``).
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import Any, Sequence

import numpy as np

from rd.figure_text import literal_text
from rd.report.curves import CURVE_SPECS, CurveData
from rd.report.formatting import METRIC_LABEL, finite

DPI = 85


# --------------------------------------------------------------------------- plumbing
def new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    literal_text(fig)   # names are drawn as written: `$` never starts mathtext
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, pil_kwargs={"optimize": True})
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI: the report embeds every image, it makes no request."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def placeholder(text: str, width: float = 6, height: float = 1.2) -> bytes:
    """A small PNG that says why a figure is missing (the figure files are always written)."""
    fig = new_figure(width, height)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="#555")
    return png_bytes(fig)


def arm_colors(arms: Sequence[str]) -> dict[str, Any]:
    """One tab10 colour per arm, stable across all figures and the HTML arm tags."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def small_multiples(n: int, cell_w: float = 2.5, cell_h: float = 2.0, max_cols: int = 5):
    """A grid of ``n`` panels with shared axes and a fixed layout (constrained layout costs
    seconds on 15 panels); returns (figure, visible axes)."""
    cols = max(1, min(max_cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(cell_w * cols, cell_h * rows + 0.5, layout=None)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    top = 1 - 0.45 / (cell_h * rows + 0.5)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.35 / (cell_h * rows + 0.5) + 0.02, top=top,
                        wspace=0.12, hspace=0.28)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def seed_band(curves: dict[tuple[str, int], np.ndarray]):
    """{(category, seed): y} on one x grid -> (mean, min, max) over seeds of the category mean.

    Categories are averaged within a seed first, so the band shows seed-to-seed spread of
    the arm's mean curve, not the spread between categories.
    """
    by_seed: dict[int, list[np.ndarray]] = {}
    for (_, seed), y in curves.items():
        by_seed.setdefault(seed, []).append(y)
    with warnings.catch_warnings():  # all-NaN points (epochs without eval) stay NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.array([np.nanmean(np.vstack(v), axis=0) for v in by_seed.values()])
        return np.nanmean(per_seed, axis=0), np.nanmin(per_seed, axis=0), np.nanmax(per_seed, axis=0)


# --------------------------------------------------------------------------- cost
def cost_scatter(points: Sequence[tuple[str, float, float, float]], colors: dict) -> bytes:
    """Image AUROC (mean ± sd over seeds) against GFLOPs; ``points`` = (arm, gflops, mean, sd)."""
    usable = [p for p in points if finite(p[1]) and finite(p[2])]
    if not usable:
        return placeholder("no complexity data (GFLOPs) or no image AUROC: scatter not drawn")
    fig = new_figure(5.6, 3.4)
    ax = fig.add_subplot()
    for arm, x, y, sd in usable:
        ax.errorbar([x], [y * 100], yerr=[sd * 100] if finite(sd) else None, fmt="o", color=colors[arm],
                    capsize=3, label=arm)
        ax.annotate(arm, (x, y * 100), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("GFLOPs per image (teacher + student, fvcore)")
    ax.set_ylabel("image AUROC (%)")
    ax.set_title("Accuracy vs cost (error bar: sd over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


# --------------------------------------------------------------------------- curves
def loss_figures(data: CurveData, arms: Sequence[str], categories: Sequence[str], colors: dict) -> dict[str, bytes]:
    """``loss`` (all categories) and ``loss_per_category``; expects ``data.has_loss``."""
    epochs = data.epochs
    fig = new_figure(5.6, 3.2)
    ax = fig.add_subplot()
    for arm in arms:
        if not data.loss[arm]:
            continue
        mean, lo, hi = seed_band(data.loss[arm])
        ax.plot(epochs, mean, color=colors[arm], label=arm, lw=1.5)
        ax.fill_between(epochs, lo, hi, color=colors[arm], alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (mean over seeds of the category mean; band: min–max over seeds)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out = {"loss": png_bytes(fig)}
    fig, axes = small_multiples(len(categories))
    for ax, category in zip(axes, categories):
        for arm in arms:
            of_category = {k: v for k, v in data.loss[arm].items() if k[0] == category}
            if of_category:
                mean, lo, hi = seed_band(of_category)
                ax.plot(epochs, mean, color=colors[arm], lw=1.2, label=arm)
                ax.fill_between(epochs, lo, hi, color=colors[arm], alpha=0.2, lw=0)
        ax.set_title(category, fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0].legend(fontsize=6)
    out["loss_per_category"] = png_bytes(fig)
    return out


def eval_metrics_figure(data: CurveData, arms: Sequence[str], colors: dict) -> bytes:
    """Image and pixel AUROC against epoch (test metrics recorded during training)."""
    epochs = data.epochs
    fig = new_figure(7.2, 3.0)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, data.eval_metrics):
        for arm in arms:
            if data.eval_metrics[metric][arm]:
                mean, lo, hi = seed_band(data.eval_metrics[metric][arm])
                ok = ~np.isnan(mean)
                ax.plot(epochs[ok], mean[ok] * 100, "o-", ms=2.5, color=colors[arm], label=arm, lw=1.2)
                ax.fill_between(epochs[ok], lo[ok] * 100, hi[ok] * 100, color=colors[arm], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{METRIC_LABEL[metric]} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Test metrics recorded during training (mean over seeds; band: min–max)", fontsize=8)
    return png_bytes(fig)


def roc_pro_figures(data: CurveData, arms: Sequence[str], categories: Sequence[str],
                    colors: dict) -> dict[str, bytes]:
    """``curves`` (image ROC, pixel ROC, PRO side by side) and ``<kind>_per_category``."""
    out = {}
    fig = new_figure(9.6, 3.1)
    axes = fig.subplots(1, 3)
    for ax, spec in zip(axes, CURVE_SPECS):
        for arm in arms:
            if data.roc_pro[spec.name][arm]:
                mean, lo, hi = seed_band(data.roc_pro[spec.name][arm])
                ax.plot(spec.grid, mean, color=colors[arm], lw=1.3, label=arm)
                ax.fill_between(spec.grid, lo, hi, color=colors[arm], alpha=0.15, lw=0)
        ax.set_title(spec.title, fontsize=9)
        ax.set_xlabel(spec.x_label, fontsize=8)
        ax.set_ylabel(spec.y_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Vertical average over categories, then mean over seeds (band: min–max over seeds)", fontsize=8)
    out["curves"] = png_bytes(fig)
    for spec in CURVE_SPECS:
        fig, axes = small_multiples(len(categories), 2.3, 1.9)
        for ax, category in zip(axes, categories):
            for arm in arms:
                of_category = {k: v for k, v in data.roc_pro[spec.name][arm].items() if k[0] == category}
                if of_category:
                    mean, _, _ = seed_band(of_category)
                    ax.plot(spec.grid, mean, color=colors[arm], lw=1.1, label=arm)
            ax.set_title(category, fontsize=8)
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=5.5, loc="lower right")
        fig.suptitle(f"{spec.title} per category (mean over seeds)", fontsize=8)
        out[f"{spec.name}_per_category"] = png_bytes(fig)
    return out


# --------------------------------------------------------------------------- failure cases
def failure_png(image, mask, amap, threshold, size: int = 112) -> bytes:
    """Image | ground truth | map overlay with the ground truth outlined (``rd predict``'s look)."""
    from rd.use.figures import anomaly_panels_png

    return anomaly_panels_png(image, amap, threshold, middle=mask, outline=mask, size=size)


def curve_figures(data: CurveData, arms: Sequence[str], categories: Sequence[str],
                  colors: dict) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every curve figure, with a placeholder and a note saying why when its data is missing."""
    figs: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    if data.has_loss:
        figs.update(loss_figures(data, arms, categories, colors))
    else:
        figs["loss"] = placeholder("no history.csv found: training loss not drawn")
        notes["loss"] = "No readable history.csv in any run folder: training loss not drawn."
    if data.has_eval_metrics:
        figs["eval_metrics"] = eval_metrics_figure(data, arms, colors)
    else:
        figs["eval_metrics"] = placeholder("test metrics were not recorded during training (eval_every = 0)")
        notes["eval_metrics"] = ("Test metrics were not recorded during training (eval_every = 0 in the config); "
                                 "set eval_every > 0 to see image/pixel AUROC against epoch.")
    if data.has_roc_pro:
        figs.update(roc_pro_figures(data, arms, categories, colors))
    else:
        figs["curves"] = placeholder("no curves.json found: ROC/PRO curves not drawn")
        notes["curves"] = "No readable curves.json in any run folder: ROC and PRO curves not drawn."
    return figs, notes
