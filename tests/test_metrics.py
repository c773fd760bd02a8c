"""Tests for rd.metrics: hand-computed cases, invariances, and brute-force references.

The brute-force references below are deliberately naive (loop over every distinct
threshold, measure each region's overlap directly) so that they share no trick with the
fast implementation they check.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rd import metrics

# ----------------------------------------------------------------------------- references


def _regions(masks: np.ndarray, connectivity: int = 8) -> list[tuple[int, np.ndarray]]:
    """(image index, boolean region mask) for every connected component of every image."""
    structure = np.ones((3, 3), bool) if connectivity == 8 else None  # None: 4-connected
    out = []
    for i, mask in enumerate(masks):
        labels, n = ndimage.label(mask, structure=structure)
        out += [(i, labels == r) for r in range(1, n + 1)]
    return out


def brute_pro_points(
    maps: np.ndarray, masks: np.ndarray, connectivity: int = 8
) -> tuple[list[float], list[float]]:
    """MVTec PRO curve the slow way: one point per distinct score, from the top down."""
    region_scores = [maps[i][r] for i, r in _regions(masks, connectivity)]
    normal = maps[~masks]
    fprs, pros = [0.0], [0.0]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        fprs.append(float(np.mean(normal >= t)))
        pros.append(float(np.mean([np.mean(s >= t) for s in region_scores])))
    return fprs, pros


def brute_area(fprs: list[float], pros: list[float], fpr_limit: float) -> float:
    """Trapezoids up to exactly fpr_limit (last piece cut by interpolation), / fpr_limit."""
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x1 > fpr_limit:  # last piece: stop at exactly fpr_limit
            y_end = y0 + (fpr_limit - x0) * (y1 - y0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_end) / 2
            break
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def brute_aupro(
    maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3, connectivity: int = 8
) -> float:
    return brute_area(*brute_pro_points(maps, masks, connectivity), fpr_limit)


def brute_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & labels)
        fp = np.sum(pred & ~labels)
        fn = np.sum(~pred & labels)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return float(best)


def random_case(seed: int, n: int = 4, size: int = 16, quantize: bool = False):
    """Random blob masks (some images left good) and scores correlated with them."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((n, size, size)), (0, 1.5, 1.5))
    masks = noise > np.quantile(noise, 0.85)
    masks[rng.random(n) < 0.4] = False  # some good images
    if not masks.any():
        masks[0, 3:6, 3:6] = True
    maps = rng.random((n, size, size)) + masks * rng.uniform(0.2, 0.8)
    if quantize:  # many ties, also across normal and defect pixels and at the FPR cut
        maps = np.round(maps * 10) / 10
    return maps, masks


# ----------------------------------------------------------------------------- AUPRO


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """Three 2x3 images. A: region R1 (2 px); B: good; C: region R2 (4 px).

    A scores        A mask    B scores        C scores          C mask
    0.9 0.5 0.8     1 1 0     0.5 0.0 0.0     0.0 0.95 0.6      0 1 1
    0.1 0.2 0.3     0 0 0     0.0 0.0 0.0     0.0 0.6  0.05     0 1 1

    12 normal pixels (4 in A, 6 in B, 2 in C). Curve, threshold by threshold:
      t=0.95  R2 1/4            FPR 0     PRO (0 + 1/4)/2   = 0.125
      t=0.9   R1 1/2            FPR 0     PRO (1/2 + 1/4)/2 = 0.375
      t=0.8   normal (A)        FPR 1/12  PRO 0.375
      t=0.6   R2 3/4            FPR 1/12  PRO (1/2 + 3/4)/2 = 0.625
      t=0.5   R1 1 AND normal (B) enter together (a tie)
                                FPR 2/12  PRO (1 + 3/4)/2   = 0.875
      t=0.3, 0.2, 0.1           FPR 3/12, 4/12, 5/12  PRO 0.875
      t=0.05  R2 1              FPR 5/12  PRO 1
      t=0.0   the 7 other normals  FPR 1  PRO 1
    """
    a = [[0.9, 0.5, 0.8], [0.1, 0.2, 0.3]]
    b = [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    c = [[0.0, 0.95, 0.6], [0.0, 0.6, 0.05]]
    maps = np.array([a, b, c])
    masks = np.zeros((3, 2, 3), bool)
    masks[0, 0, :2] = True
    masks[2, :, 1:] = True
    return maps, masks


def test_aupro_hand_case_with_interpolated_end_point():
    maps, masks = hand_case()
    # fpr_limit 0.125 = 1.5/12 falls inside the tie segment (1/12, 0.625) -> (2/12, 0.875):
    # end point PRO = 0.625 + (0.125 - 1/12) / (1/12) * 0.25 = 0.75.
    # area = 1/12 * 0.375                  (flat from FPR 0 to 1/12)   = 1/32  = 12/384
    #      + 1/24 * (0.625 + 0.75) / 2     (1/12 up to the end point)  = 11/384
    # AUPRO = (23/384) / 0.125 = 23/48
    assert metrics.aupro(maps, masks, fpr_limit=0.125) == pytest.approx(23 / 48, abs=1e-12)
    fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=0.125, max_points=None)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 12, 1 / 12, 0.125], atol=1e-12)
    np.testing.assert_allclose(pro, [0, 0.125, 0.375, 0.375, 0.625, 0.75], atol=1e-12)


def test_aupro_hand_case_full_curve():
    maps, masks = hand_case()
    # fpr_limit 1, no interpolation: trapezoids of the curve in hand_case's docstring:
    # 1/12*0.375 + 1/12*(0.625+0.875)/2 + 3/12*0.875 + 7/12*1
    # = 12/384 + 24/384 + 84/384 + 224/384 = 344/384 = 43/48
    assert metrics.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(43 / 48, abs=1e-12)
    # fpr_limit 0.25 = 3/12 lands exactly on a curve point (no interpolation needed):
    # 12/384 + 24/384 + 1/12*0.875 (= 28/384) = 64/384 = 1/6, / 0.25 = 2/3
    assert metrics.aupro(maps, masks, fpr_limit=0.25) == pytest.approx(2 / 3, abs=1e-12)


def test_aupro_regions_are_8_connected():
    # Two blobs touching only diagonally at (1,1)-(2,2): one 8-connected region of 10 px,
    # but two 4-connected regions (4 px and 6 px).
    masks = np.zeros((1, 5, 5), bool)
    masks[0, 0:2, 0:2] = True  # blob 1, 4 px, score 0.9
    masks[0, 2:4, 2:5] = True  # blob 2, 6 px, score 0.5
    maps = np.full((1, 5, 5), 0.1)
    maps[0, 0:2, 0:2] = 0.9
    maps[0, 2:4, 2:5] = 0.5
    maps[0, 4, 0] = 0.7  # one of the 15 normal pixels scores above blob 2
    # 8-connected: t=0.9 PRO 4/10, t=0.7 FPR 1/15, t=0.5 PRO 1.
    #   fpr_limit 0.3: (1/15*0.4 + (0.3 - 1/15)*1) / 0.3 = 13/15
    # 4-connected would give PRO (1 + 0)/2 = 0.5 at t=0.9: (1/15*0.5 + 0.3 - 1/15)/0.3 = 8/9
    assert metrics.aupro(maps, masks) == pytest.approx(13 / 15, abs=1e-12)
    assert brute_aupro(maps, masks, connectivity=4) == pytest.approx(8 / 9, abs=1e-12)
    # fpr_limit 1: 1/15*0.4 + 14/15 = 0.96 (4-connected: 14.5/15)
    assert metrics.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.96, abs=1e-12)


def test_aupro_regions_do_not_connect_across_images():
    # The same pixel position masked in two consecutive images is two regions: image 0 has
    # a 1-px region scored 1.0, image 1 a 2-px region scored 0.
    masks = np.zeros((2, 3, 3), bool)
    masks[0, 1, 1] = True
    masks[1, 1, 1:] = True
    maps = np.zeros((2, 3, 3))
    maps[0, 1, 1] = 1.0
    maps[:, 0, 0] = 0.5  # two normal pixels in between
    # At t=1: per-region mean (1 + 0)/2 = 0.5; one 3-px region merged through the image
    # axis would give 1/3.
    fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=1.0, max_points=None)
    assert (fpr[1], pro[1]) == (0.0, pytest.approx(0.5))


@pytest.mark.parametrize("seed", range(6))
def test_aupro_matches_brute_force(seed):
    maps, masks = random_case(seed, quantize=seed % 2 == 1)
    curve = brute_pro_points(maps, masks)
    for fpr_limit in (0.3, 0.05, 1.0):
        expected = brute_area(*curve, fpr_limit)
        assert metrics.aupro(maps, masks, fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_aupro_float32_maps_match_brute_force():
    maps, masks = random_case(11)
    maps = maps.astype(np.float32)
    expected = brute_aupro(maps.astype(np.float64), masks)
    assert metrics.aupro(maps, masks) == pytest.approx(expected, abs=1e-9)


def test_aupro_and_pixel_auroc_invariant_under_increasing_transform():
    maps, masks = random_case(3)
    a, p = metrics.aupro(maps, masks), metrics.pixel_auroc(maps, masks)
    for f in (np.exp, lambda x: x**3 + 5, lambda x: 100 * x - 7):
        assert metrics.aupro(f(maps), masks) == pytest.approx(a, abs=1e-12)
        assert metrics.pixel_auroc(f(maps), masks) == pytest.approx(p, abs=1e-12)


def test_good_images_count_in_fpr():
    maps, masks = random_case(5)
    base = metrics.aupro(maps, masks)
    # an anomaly-free image whose pixels all outscore every defect: pure false positives
    good = np.full((1,) + maps.shape[1:], maps.max() + 1.0)
    worse = metrics.aupro(np.concatenate([maps, good]), np.concatenate([masks, good < 0]))
    assert worse < base - 0.01
    # an anomaly-free image scoring below everything only dilutes the FPR: AUPRO rises
    low = np.full((1,) + maps.shape[1:], maps.min() - 1.0)
    better = metrics.aupro(np.concatenate([maps, low]), np.concatenate([masks, low > 0]))
    assert better > base


def test_pro_curve_for_plots():
    maps, masks = random_case(2)
    fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=0.3, max_points=50)
    assert len(fpr) <= 50 and fpr[0] == 0 and fpr[-1] == pytest.approx(0.3)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    full_fpr, full_pro = metrics.pro_curve(maps, masks, max_points=None)
    assert len(full_fpr) > 50 and full_pro[-1] == pytest.approx(pro[-1])


# ----------------------------------------------------------------------------- others


def test_perfect_separation_scores_one():
    maps, masks = random_case(7)
    perfect = masks + 0.1 * np.random.default_rng(0).random(masks.shape)
    labels = masks.any(axis=(1, 2))
    image_scores = perfect.max(axis=(1, 2))
    assert metrics.image_auroc(image_scores, labels) == 1.0
    assert metrics.average_precision(image_scores, labels) == pytest.approx(1.0)
    assert metrics.f1_max(image_scores, labels) == pytest.approx(1.0)
    assert metrics.pixel_auroc(perfect, masks) == 1.0
    assert metrics.pixel_average_precision(perfect, masks) == pytest.approx(1.0)
    assert metrics.f1_max(perfect.ravel(), masks.ravel()) == pytest.approx(1.0)
    assert metrics.aupro(perfect, masks) == pytest.approx(1.0, abs=1e-12)


def test_image_auroc_and_ap_hand_case():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # pairs (pos, neg): (0.35 vs 0.1 ok, vs 0.4 wrong), (0.8 vs both ok) -> 3/4
    assert metrics.image_auroc(scores, labels) == pytest.approx(0.75)
    # ranks: 0.8 (pos, P=1, R=1/2), 0.4 (neg), 0.35 (pos, P=2/3, R=1): AP = 1/2*1 + 1/2*2/3
    assert metrics.average_precision(scores, labels) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", range(4))
def test_f1_max_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + labels * 0.4, 2)  # with ties
    best, threshold = metrics.f1_max_threshold(scores, labels)
    assert best == pytest.approx(brute_f1_max(scores, labels), abs=1e-12)
    assert metrics.f1_max(scores, labels) == best
    pred = scores >= threshold
    tp = np.sum(pred & labels)
    f1_at = 2 * tp / (2 * tp + np.sum(pred & ~labels) + np.sum(~pred & labels))
    assert f1_at == pytest.approx(best, abs=1e-12)


def test_iou_hand_case():
    masks = np.zeros((2, 2, 3), bool)
    masks[0, 0, :2] = True  # 2 defect pixels, image 1 is good
    maps = np.zeros((2, 2, 3))
    maps[0, 0, 0] = 0.9  # hit
    maps[0, 1, 2] = 0.8  # false alarm in the defective image
    maps[1, 0, 0] = 0.7  # false alarm in the good image
    maps[0, 0, 1] = 0.2  # missed at threshold 0.5
    # predicted {hit, 2 false alarms}; truth {hit, miss}: IoU = 1 / 4
    assert metrics.iou_at_threshold(maps, masks, 0.5) == pytest.approx(0.25)
    # threshold 0.2 adds the miss: intersection 2, union 4 -> 0.5
    assert metrics.iou_at_threshold(maps, masks, 0.2) == pytest.approx(0.5)


def test_roc_points_downsampled():
    rng = np.random.default_rng(0)
    labels = rng.random(20000) < 0.5
    scores = rng.random(20000) + labels * 0.3
    fpr, tpr = metrics.roc_points(scores, labels, max_points=100)
    assert 2 <= len(fpr) <= 100
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # the downsampled curve keeps the area
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.image_auroc(scores, labels), abs=2e-3)


# ----------------------------------------------------------------------------- errors


def test_degenerate_input_raises_value_error():
    maps, masks = random_case(1)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        metrics.pixel_auroc(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="both normal and anomalous"):
        metrics.image_auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.aupro(maps, masks[:, :-1])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.f1_max([0.1, 0.2, 0.3], [0, 1])
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    for fn in (metrics.aupro, metrics.pixel_auroc, metrics.pixel_average_precision):
        with pytest.raises(ValueError, match="NaN"):
            fn(bad, masks)
    with pytest.raises(ValueError, match="at least one defect region"):
        metrics.aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="anomaly-free pixels"):
        metrics.aupro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="fpr_limit"):
        metrics.aupro(maps, masks, fpr_limit=0.0)
    with pytest.raises(ValueError, match="0/1"):
        metrics.aupro(maps, masks.astype(np.uint8) * 255)
    # 0/1 integer masks are accepted and mean the same as booleans
    assert metrics.aupro(maps, masks.astype(np.uint8)) == metrics.aupro(maps, masks)
