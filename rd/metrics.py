"""Anomaly-detection metrics: numpy arrays in, Python floats out.

Image- and pixel-level ranking metrics come straight from scikit-learn. ``aupro`` is the
MVTec AD per-region-overlap metric, computed exactly over every distinct score (no threshold
grid), so its value does not depend on a grid resolution and matches the reference definition.
``pro_rd4ad`` is the different, per-image PRO of the official RD4AD code, for comparison with the
paper's table. The list of reported metrics (names, labels, direction) is ``rd.metric_list``.

Degenerate input (a single class, mismatched shapes, NaN/inf scores) raises ``ValueError``
with a message saying what is wrong; callers that face users turn it into an ``RDError``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "image_auroc",
    "pixel_auroc",
    "average_precision",
    "pixel_average_precision",
    "f1_max",
    "f1_max_threshold",
    "iou_at_threshold",
    "roc_points",
    "pro_curve",
    "aupro",
    "pro_rd4ad",
]

# 8-connectivity inside each image and none across images: labelling the whole N×H×W stack
# in one call with this structure gives test-set-wide unique region ids in a single pass.
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True


# ----------------------------------------------------------------------------- validation
def _scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    """1-D finite scores and boolean labels of equal length with both classes present."""
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}"
        )
    if s.shape != y.shape:
        raise ValueError(
            f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}"
        )
    return _finite(s, "scores"), _binary(y, "labels")


def _maps_masks(maps: ArrayLike, masks: ArrayLike) -> tuple[NDArray, NDArray]:
    """N×H×W finite float maps and boolean masks of the same shape (H×W means one image)."""
    m = np.asarray(maps)
    g = np.asarray(masks)
    if m.shape != g.shape:
        raise ValueError(f"maps and masks differ in shape: {m.shape} vs {g.shape}")
    if m.ndim == 2:
        m, g = m[None], g[None]
    if m.ndim != 3 or m.size == 0:
        raise ValueError(f"maps must be N×H×W (or H×W) and non-empty, got shape {m.shape}")
    return _finite(m, "maps"), _binary(g, "masks")


def _finite(a: NDArray, name: str) -> NDArray:
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        # float16 sorts slowly and integers are fine as float64; both keep their order.
        a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return a


def _binary(a: NDArray, name: str) -> NDArray:
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1, got values outside {{0, 1}}")
    return a.astype(bool)


def _both_classes(y: NDArray, what: str) -> None:
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        only = "anomalous" if n_pos else "normal"
        raise ValueError(
            f"{what} needs both normal and anomalous samples, but all {y.size} are {only}"
        )


# ----------------------------------------------------------------------------- ranking
def _images(scores: ArrayLike, labels: ArrayLike, what: str) -> tuple[NDArray, NDArray]:
    """(labels, scores) of images, checked, with both classes present (sklearn's argument order)."""
    s, y = _scores_labels(scores, labels)
    _both_classes(y, what)
    return y, s


def _pixels(maps: ArrayLike, masks: ArrayLike, what: str) -> tuple[NDArray, NDArray]:
    """(truth, scores) of all test pixels pooled, checked, with both classes present."""
    m, g = _maps_masks(maps, masks)
    _both_classes(g, what)
    return g.ravel(), m.ravel()


def image_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """ROC AUC of image scores (e.g. max of the map) against image labels (1 = defect)."""
    return float(roc_auc_score(*_images(scores, labels, "image AUROC")))


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float:
    """ROC AUC over all test pixels pooled (good images included)."""
    return float(roc_auc_score(*_pixels(maps, masks, "pixel AUROC")))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision (area under the step PR curve) of 1-D scores."""
    return float(average_precision_score(*_images(scores, labels, "average precision")))


def pixel_average_precision(maps: ArrayLike, masks: ArrayLike) -> float:
    """Average precision over all test pixels pooled."""
    return float(average_precision_score(*_pixels(maps, masks, "pixel average precision")))


def f1_max_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold reaching it (positive: score >= t).

    Works for pixels too: pass ``maps.ravel()`` and ``masks.ravel()``.
    """
    s, y = _scores_labels(scores, labels)
    _both_classes(y, "F1max")
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last PR point (precision 1, recall 0) has no threshold.
    p, r = precision[:-1], recall[:-1]
    denom = p + r
    f1 = np.divide(2.0 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    """Best F1 over all thresholds (see ``f1_max_threshold``)."""
    return f1_max_threshold(scores, labels)[0]


def iou_at_threshold(maps: ArrayLike, masks: ArrayLike, threshold: float) -> float:
    """IoU of the predicted defect mask (map >= threshold) and the truth, all pixels pooled.

    Pooling (not a mean of per-image IoUs) keeps good images meaningful: false alarms on
    them enlarge the union instead of producing an undefined 0/0.
    """
    m, g = _maps_masks(maps, masks)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    if not g.any():
        raise ValueError("IoU needs at least one defect pixel in masks, found none")
    pred = m >= threshold
    inter = np.count_nonzero(pred & g)
    union = np.count_nonzero(pred | g)
    return inter / union


# ----------------------------------------------------------------------------- curves
def _downsample(x: NDArray, y: NDArray, max_points: int | None) -> tuple[NDArray, NDArray]:
    """Keep at most ``max_points`` points spread evenly along the curve's length.

    Spacing by path length (not by index) keeps the steep part of a ROC curve, where most
    points sit, from crowding out the rest. First and last points are always kept.
    """
    if max_points is None or len(x) <= max_points:
        return x, y
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    length = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))])
    targets = np.linspace(0.0, length[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(length, targets), 0, len(x) - 1))
    idx[0], idx[-1] = 0, len(x) - 1
    idx = np.unique(idx)
    return x[idx], y[idx]


def roc_points(
    scores: ArrayLike, labels: ArrayLike, max_points: int | None = 1000
) -> tuple[NDArray, NDArray]:
    """ROC curve (fpr, tpr) for plots, at most ``max_points`` points (None: all)."""
    s, y = _scores_labels(np.ravel(scores), np.ravel(labels))
    _both_classes(y, "ROC curve")
    fpr, tpr, _ = roc_curve(y, s)
    return _downsample(fpr, tpr, max_points)


def _exact_pro_points(
    maps: ArrayLike, masks: ArrayLike, fpr_limit: float
) -> tuple[NDArray, NDArray]:
    """Exact (fpr, pro) points from (0, 0) over every distinct score, in decreasing score
    order, down to the first score whose FPR exceeds ``fpr_limit`` (to (1, 1) if none does).

    Each normal pixel weighs 1/N_normal on the FPR axis and each pixel of region r weighs
    1/(|r| * n_regions) on the PRO axis; summing the weights per distinct score and taking
    cumulative sums from the top score down gives the curve, one point per threshold, with
    tied pixels entering together. Two things keep it fast while exact:
    - thresholds below the one where FPR first passes the limit never enter the integral,
      so a linear-time partition of the normal scores finds that cut and only pixels
      scoring at or above it are kept;
    - per-score sums come from ``np.unique`` (a plain sort, several times faster than an
      argsort) and ``np.bincount``; only the few defect pixels are looked up.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    m, g = _maps_masks(maps, masks)
    n_normal = g.size - int(np.count_nonzero(g))
    if n_normal == 0:
        raise ValueError("AUPRO needs anomaly-free pixels to measure the FPR, found none")

    # Label only images that have a defect (good images add no region); the boolean
    # gathers below visit pixels in the same C order, so they stay aligned.
    defective = g.any(axis=(1, 2))
    g_def = g[defective]
    labels, n_regions = ndimage.label(g_def, structure=_STRUCTURE_8)
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one defect region in masks, found none")
    defect_labels = labels[g_def]
    defect_scores = m[g]
    sizes = np.bincount(defect_labels, minlength=n_regions + 1)
    defect_weight = 1.0 / (sizes[defect_labels].astype(np.float64) * n_regions)

    normal_scores = m[~g]
    # k-th largest normal score with k/N_normal > fpr_limit: thresholds above it have
    # FPR <= fpr_limit, it itself lies past the limit (the interpolation end), lower ones
    # are never needed. ceil(.)+1 stays on the safe side of float rounding.
    k = min(n_normal, int(np.ceil(fpr_limit * n_normal)) + 1)
    tied_below = 0
    if k < n_normal:
        normal_scores.partition(n_normal - k)  # in place: the k largest end up on the right
        cut = normal_scores[n_normal - k]
        # normal pixels equal to the cut but left of it still count at threshold == cut
        tied_below = int(np.count_nonzero(normal_scores[: n_normal - k] == cut))
        normal_scores = normal_scores[n_normal - k :]
        keep = defect_scores >= cut
        defect_scores = defect_scores[keep]
        defect_weight = defect_weight[keep]

    thresholds, counts = np.unique(
        np.concatenate([normal_scores, defect_scores]), return_counts=True
    )
    # sorted keys make searchsorted cache-friendly: sorting the few defect pixels first
    # costs less than the random lookups it saves
    order = np.argsort(defect_scores)
    slot = np.searchsorted(thresholds, defect_scores[order])
    defect_weight = defect_weight[order]
    n_bins = thresholds.size
    fp = counts - np.bincount(slot, minlength=n_bins)
    fp[0] += tied_below  # thresholds[0] == cut when a cut was made
    overlap = np.bincount(slot, weights=defect_weight, minlength=n_bins)
    # from the highest threshold down
    fpr = np.cumsum(fp[::-1], dtype=np.int64) / n_normal
    pro = np.cumsum(overlap[::-1], dtype=np.float64)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], pro])


def pro_rd4ad(maps: ArrayLike, masks: ArrayLike, num_thresholds: int = 200, fpr_limit: float = 0.3) -> float:
    """The PRO column of the RD4AD paper, computed as its official ``test.py`` (``compute_pro``).

    Not the MVTec AD ``aupro``: the official code scores each anomalous test image on its own
    and averages the images. Per image: ``num_thresholds`` thresholds ``np.arange(min, max,
    (max - min) / num_thresholds)`` over that image's map; at each, PRO is the mean over the
    image's 8-connected defect regions of the fraction of the region scoring above it, and FPR
    the fraction of that image's normal pixels above it; points with FPR < ``fpr_limit`` are
    kept, FPR is divided by the largest kept FPR (not by ``fpr_limit``), and the area under PRO
    over FPR (``sklearn.metrics.auc``) is the image's score. Use it to hold a run against the
    paper's table (RD: 93.9 mean on MVTec AD); report ``aupro`` as the field's standard.

    An image whose score is undefined in the official code (a constant map, no normal pixel,
    fewer than two kept points) makes the result NaN rather than a number it would not give.
    """
    from sklearn.metrics import auc

    maps_arr, masks_arr = _maps_masks(maps, masks)
    per_image = []
    for amap, mask in zip(maps_arr.astype(np.float64), masks_arr):
        if not mask.any():
            continue
        lo, hi = float(amap.min()), float(amap.max())
        normal = np.sort(amap[~mask])
        if hi == lo or normal.size == 0:
            per_image.append(np.nan)
            continue
        thresholds = np.arange(lo, hi, (hi - lo) / num_thresholds)
        regions, n_regions = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        order = np.argsort(regions[mask], kind="stable")
        values, ids = amap[mask][order], regions[mask][order]
        bounds = np.searchsorted(ids, np.arange(1, n_regions + 2))
        overlaps = []
        for r in range(n_regions):
            region = np.sort(values[bounds[r]:bounds[r + 1]])
            overlaps.append((region.size - np.searchsorted(region, thresholds, side="right")) / region.size)
        pro = np.mean(overlaps, axis=0)
        fpr = (normal.size - np.searchsorted(normal, thresholds, side="right")) / normal.size
        keep = fpr < fpr_limit
        if keep.sum() < 2 or fpr[keep].max() == 0:
            per_image.append(np.nan)
            continue
        per_image.append(auc(fpr[keep] / fpr[keep].max(), pro[keep]))
    if not per_image:
        raise ValueError("pro_rd4ad needs at least one test image with defect pixels")
    return float(np.mean(per_image))


def pro_curve(
    maps: ArrayLike,
    masks: ArrayLike,
    fpr_limit: float = 0.3,
    max_points: int | None = 1000,
) -> tuple[NDArray, NDArray]:
    """PRO curve (fpr, pro) from FPR 0 up to exactly ``fpr_limit`` (interpolated end point).

    Downsampled to ``max_points`` for plots; ``max_points=None`` gives every exact point,
    the curve ``aupro`` integrates.
    """
    fpr, pro = _exact_pro_points(maps, masks, fpr_limit)
    fpr, pro = _clip_at(fpr, pro, fpr_limit)
    return _downsample(fpr, pro, max_points)


def _clip_at(fpr: NDArray, pro: NDArray, fpr_limit: float) -> tuple[NDArray, NDArray]:
    """Cut the curve at the first point past ``fpr_limit`` and end it exactly there by
    linear interpolation (the MVTec AD convention)."""
    j = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr is non-decreasing
    if j == fpr.size:
        return fpr, pro
    # j >= 1 because fpr[0] == 0 <= fpr_limit
    x0, x1, y0, y1 = fpr[j - 1], fpr[j], pro[j - 1], pro[j]
    end = y0 + (fpr_limit - x0) * (y1 - y0) / (x1 - x0)
    return (
        np.concatenate([fpr[:j], [fpr_limit]]),
        np.concatenate([pro[:j], [end]]),
    )


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition).

    Regions are the 8-connected components of each image's mask, pooled over the test set;
    FPR counts every anomaly-free pixel of every image (good images included); PRO(t) is the
    mean over regions of the fraction of the region scoring >= t. Exact over all distinct
    scores, trapezoid rule, divided by ``fpr_limit`` so a perfect detector scores 1.
    """
    fpr, pro = _exact_pro_points(maps, masks, fpr_limit)
    fpr, pro = _clip_at(fpr, pro, fpr_limit)
    return float(np.trapezoid(pro, fpr) / fpr_limit)
