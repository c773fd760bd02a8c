"""Pins of the method: every expected value here is computed by hand (written out in the
comments) or by a second implementation that shares no code path with the one under test.

Each test was written against a one-line bug ("mutant") that the rest of the suite let through:
the Gaussian sigma not scaled with the image size, ``align_corners=False`` in the upsampling,
pixel AUROC over every second pixel, 4-connected regions in ``pro_rd4ad``, a degenerate-spread
tolerance of 1e-3, and a comparison listed twice in the config. Fast (no training): the
mutation run of docs/testing.md uses this file.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from scipy.ndimage import gaussian_filter

from rd.method.anomaly_map import anomaly_maps, gaussian_sigma, raw_anomaly_map
from rd.metrics import pixel_auroc, pro_rd4ad
from rd.stats import compute_stats, paired_test


# --------------------------------------------------------------------------- anomaly maps
def test_gaussian_sigma_is_4_at_256_px_and_scales_with_the_size():
    assert gaussian_sigma(256) == 4.0
    assert gaussian_sigma(128) == 2.0
    assert gaussian_sigma(512) == 8.0


def test_anomaly_maps_smooth_with_sigma_1_at_64_px():
    """The smoothing of the whole map function, against scipy called with the literal sigma
    (4 * 64 / 256 = 1): a sigma fixed at 4 blurs far more."""
    rng = np.random.default_rng(0)
    t = [torch.from_numpy(rng.random((2, 3, 8, 8), dtype=np.float32))]
    s = [torch.from_numpy(rng.random((2, 3, 8, 8), dtype=np.float32))]
    raw = raw_anomaly_map(t, s, 64).numpy()
    out = anomaly_maps(t, s, 64)
    expected = np.stack([gaussian_filter(m, sigma=1.0) for m in raw])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert out.dtype == np.float32
    assert np.abs(out - np.stack([gaussian_filter(m, sigma=4.0) for m in raw])).max() > 1e-3


def _stage_with_columns_0_and_1() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2×2 stage whose 1 - cos is 0 in the left column (t = s) and 1 in the right (t ⟂ s)."""
    t = torch.zeros(1, 2, 2, 2)
    t[0, 0] = 1.0                      # teacher: (1, 0) everywhere
    s = torch.zeros(1, 2, 2, 2)
    s[0, 0, :, 0] = 1.0                # student: (1, 0) in column 0 ...
    s[0, 1, :, 1] = 1.0                # ... (0, 1) in column 1
    return t, s


def test_a_2px_stage_upsampled_to_4px_is_0_third_two_thirds_1():
    """Bilinear with align_corners=True puts the 2 samples on the outer pixel centres, so the
    4 pixels sit at 0, 1/3, 2/3, 1 of the way (align_corners=False: 0, 1/4, 3/4, 1)."""
    t, s = _stage_with_columns_0_and_1()
    out = raw_anomaly_map([t], [s], 4)
    assert out.shape == (1, 4, 4)
    for row in out[0]:
        np.testing.assert_allclose(row.numpy(), [0.0, 1 / 3, 2 / 3, 1.0], atol=1e-6)


def test_two_stages_add_and_multiply():
    t, s = _stage_with_columns_0_and_1()
    t4, s4 = torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    s4[0, 1] = -1.0                    # (1, -1) against (1, 1): cos 0, so 1 - cos = 1 everywhere
    add = raw_anomaly_map([t, t4], [s, s4], 4)[0, 0].numpy()
    mul = raw_anomaly_map([t, t4], [s, s4], 4, mode="mul")[0, 0].numpy()
    np.testing.assert_allclose(add, [1.0, 4 / 3, 5 / 3, 2.0], atol=1e-6)
    np.testing.assert_allclose(mul, [0.0, 1 / 3, 2 / 3, 1.0], atol=1e-6)


def test_anomaly_maps_multiplies_stages_when_asked():
    t, s = _stage_with_columns_0_and_1()
    t4, s4 = torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    s4[0, 1] = -1.0
    s4[0, :, :, 0] = 1.0               # column 0 of the second stage agrees: 1 - cos = 0 there
    # add: [0 + 0, 1/3 + 1, 2/3 + 1, 1 + 1]; mul: [0, 1/3, 2/3, 1]; smoothed with sigma 4 * 4 / 256
    sigma = 1 / 16
    add = anomaly_maps([t, t4], [s, s4], 4)[0, 0]
    mul = anomaly_maps([t, t4], [s, s4], 4, mode="mul")[0, 0]
    np.testing.assert_allclose(add, gaussian_filter(np.tile([0.0, 4 / 3, 5 / 3, 2.0], (4, 1)), sigma)[0], atol=1e-6)
    np.testing.assert_allclose(mul, gaussian_filter(np.tile([0.0, 1 / 3, 2 / 3, 1.0], (4, 1)), sigma)[0], atol=1e-6)


# --------------------------------------------------------------------------- loss
def test_distillation_loss_by_hand():
    """Per stage 1 - cos of the flattened maps, mean over the batch, summed over stages.
    Stage 1 (one sample): t = (1, 0, 0, 0), s = (1, 1, 0, 0): cos = 1/sqrt(2).
    Stage 2 (two samples): t = s (cos 1) and t = -s (cos -1): mean of 0 and 2 = 1."""
    from rd.method.loss import cosine_distillation_loss

    t1 = torch.tensor([1.0, 0, 0, 0]).reshape(1, 1, 2, 2)
    s1 = torch.tensor([1.0, 1, 0, 0]).reshape(1, 1, 2, 2)
    assert cosine_distillation_loss([t1], [s1]).item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    t2 = torch.tensor([[1.0, 2, 3], [1, -1, 2]]).reshape(2, 3, 1, 1)
    s2 = torch.stack([t2[0], -t2[1]])
    total = cosine_distillation_loss([t1.repeat(2, 1, 1, 1), t2], [s1.repeat(2, 1, 1, 1), s2])
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(1 - 1 / math.sqrt(2) + 1.0, abs=1e-6)


# --------------------------------------------------------------------------- pixel AUROC
def _auroc_by_pairs(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as its definition: P(defect pixel scores above a normal one), ties count 1/2."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def test_pixel_auroc_is_the_pairwise_probability_over_every_pixel():
    rng = np.random.default_rng(3)
    masks = rng.random((3, 12, 10)) < 0.2
    # defect pixels score a little higher, rounded to create ties: AUROC neither 0.5 nor 1
    maps = np.round(rng.random((3, 12, 10)) + 0.3 * masks, 1)
    expected = _auroc_by_pairs(maps.ravel(), masks.ravel())
    assert 0.6 < expected < 0.95
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- PRO as RD4AD
def test_pro_rd4ad_regions_touching_at_a_corner_are_one_region():
    """One 4×4 image, worked by hand.

    Defect pixels: A = (0,0), (0,1) scoring 1.0 and B = (1,2) scoring 0.5012; B touches (0,1)
    only at a corner. 8-connected (skimage.measure.label's default in the official code): one
    region of 3 pixels; 4-connected: regions of 2 and 1.
    Normal pixels (13): (3,0) scores 0.2512, (3,3) 0.7512, the rest 0, so min 0, max 1 and the
    200 thresholds are k/200. FPR (normal pixels strictly above t): 2/13 up to t = 0.25,
    1/13 from 0.255 to 0.75, 0 from 0.755; all kept (< 0.3) and divided by the largest, 2/13:
    1, 1/2, 0. The area (sklearn's trapezoids; equal x adds nothing) has two steps:
      x 1 -> 1/2 at t 0.25 -> 0.255: B is above t too, PRO 1, area 1/2 * 1 = 1/2
      x 1/2 -> 0 at t 0.75 -> 0.755: B is not, PRO 8-conn = 2/3 (2 of 3 pixels),
        4-conn = (2/2 + 0/1) / 2 = 1/2; area 1/2 * 2/3 = 1/3 (4-conn 1/4)
    8-conn: 1/2 + 1/3 = 5/6; 4-conn would give 3/4.
    """
    amap = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[0, 1] = mask[1, 2] = True
    amap[0, 0] = amap[0, 1] = 1.0
    amap[1, 2] = 0.5012
    amap[3, 0], amap[3, 3] = 0.2512, 0.7512
    assert pro_rd4ad(amap[None], mask[None]) == pytest.approx(5 / 6, abs=1e-12)


# --------------------------------------------------------------------------- statistics
def test_a_spread_of_2e_6_near_0_9_is_tested():
    """Real pixel-level differences can vary by 1e-6 on values near 0.9: that is a spread, not
    rounding, and must get a t-test. By hand, d = (1, -1, 0.5, 0) e-6: mean 0.125e-6,
    squared deviations 0.765625 + 1.265625 + 0.140625 + 0.015625 = 2.1875 (e-12), sd =
    sqrt(2.1875 / 3) e-6 = 0.853913e-6, t = 0.125 / (0.853913 / 2) = 0.292770, df 3."""
    a = np.array([0.90, 0.91, 0.92, 0.93])
    b = a + np.array([1e-6, -1e-6, 0.5e-6, 0.0])
    row = paired_test(a, b, min_units=2)
    assert row["note"] == ""
    assert row["t"] == pytest.approx(0.292770, rel=1e-5)
    # the p of that t from the t distribution itself (not ttest_rel): two tails, df 3
    assert row["p"] == pytest.approx(2 * sps.t.sf(0.2927700218845599, 3), rel=1e-5)
    assert row["p"] == pytest.approx(sps.ttest_rel(b, a).pvalue, rel=1e-9)


# Three categories, two seeds each (written out): arm_a and arm_b per category and seed.
#   brick:  a 0.80, 0.82 (mean 0.81)   b 0.81, 0.83 (mean 0.82)   d 0.01
#   grass:  a 0.90, 0.94 (mean 0.92)   b 0.95, 0.93 (mean 0.94)   d 0.02
#   gravel: a 0.70, 0.74 (mean 0.72)   b 0.80, 0.76 (mean 0.78)   d 0.06
# Across categories (n = 3): mean_a = (0.81 + 0.92 + 0.72) / 3 = 0.816667,
# mean_b = (0.82 + 0.94 + 0.78) / 3 = 0.846667, mean d = 0.03;
# deviations -0.02, -0.01, 0.03 -> sum of squares 14e-4, sd = sqrt(7e-4) = 0.0264575,
# d_z = 0.03 / 0.0264575 = 1.133893; se = sd / sqrt(3) = 0.0152753, t = sqrt(27 / 7) = 1.963961.
# With df = 2 the t distribution has the closed form F(t) = 1/2 + t / (2 sqrt(2 + t^2)):
#   p = 1 - |t| / sqrt(2 + t^2) = 1 - sqrt(27 / 41) = 0.188497;
#   the 0.975 quantile solves t^2 / (2 + t^2) = 0.95^2: t^2 = 2 * 0.9025 / 0.0975, t = 4.302653,
#   CI = 0.03 -+ 4.302653 * 0.0152753 = [-0.035724, 0.095724].
HAND = {"brick": ([0.80, 0.82], [0.81, 0.83]), "grass": ([0.90, 0.94], [0.95, 0.93]),
        "gravel": ([0.70, 0.74], [0.80, 0.76])}
T_CRIT_DF2 = math.sqrt(2 * 0.9025 / 0.0975)
SE = math.sqrt(7e-4) / math.sqrt(3)


def _check_hand_row(row: dict) -> None:
    assert row["n"] == 3
    assert row["mean_a"] == pytest.approx(0.816667, abs=1e-6)
    assert row["mean_b"] == pytest.approx(0.846667, abs=1e-6)
    assert row["mean_diff"] == pytest.approx(0.03, abs=1e-12)
    assert row["d_z"] == pytest.approx(1.133893, abs=1e-6)
    assert row["t"] == pytest.approx(math.sqrt(27 / 7), rel=1e-9)
    assert row["p"] == pytest.approx(1 - math.sqrt(27 / 41), rel=1e-9)
    assert T_CRIT_DF2 == pytest.approx(4.302653, abs=1e-6)
    assert row["ci_low"] == pytest.approx(0.03 - T_CRIT_DF2 * SE, rel=1e-9)
    assert row["ci_high"] == pytest.approx(0.03 + T_CRIT_DF2 * SE, rel=1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-0.035724, 0.095724), abs=1e-6)


def test_paired_test_hand_values_on_three_category_means():
    a = [np.mean(HAND[c][0]) for c in HAND]
    b = [np.mean(HAND[c][1]) for c in HAND]
    _check_hand_row(paired_test(np.array(a), np.array(b), min_units=2))


def test_across_categories_averages_seeds_first_hand_values():
    rows = [{"arm": arm, "category": cat, "seed": seed, "image_auroc": values[i][seed]}
            for cat, values in HAND.items() for i, arm in enumerate(("r/base", "c/base")) for seed in (0, 1)]
    frame = compute_stats(pd.DataFrame(rows), [("r/base", "c/base")], ["image_auroc"], min_units=2)
    across = frame[frame["reading"] == "across_categories"]
    assert len(across) == 1
    _check_hand_row(across.iloc[0].to_dict())
    # per category, n = seeds = 2: brick's differences 0.01, 0.01 are constant -> no t
    brick = frame[frame["reading"] == "per_category:brick"].iloc[0]
    assert brick["n"] == 2 and brick["mean_diff"] == pytest.approx(0.01) and math.isnan(brick["p"])


def test_across_row_units_and_no_note_when_every_run_has_its_partner():
    rows = [{"arm": arm, "category": cat, "seed": seed, "image_auroc": values[i][seed]}
            for cat, values in HAND.items() for i, arm in enumerate(("r/base", "c/base")) for seed in (0, 1)]
    frame = compute_stats(pd.DataFrame(rows), [("r/base", "c/base")], ["image_auroc"], min_units=2)
    across = frame[frame["reading"] == "across_categories"].iloc[0]
    assert across["unit"] == "categories" and across["note"] == ""
    assert set(frame.loc[frame["reading"] != "across_categories", "unit"]) == {"seeds"}


def _runs(values_a, values_b, metric="image_auroc"):
    """One seed per category: values_a[i], values_b[i] for category c<i>."""
    return pd.DataFrame([{"arm": arm, "category": f"c{i}", "seed": 0, metric: v}
                         for arm, values in (("r/base", values_a), ("c/base", values_b))
                         for i, v in enumerate(values)])


def test_runs_without_a_value_or_partner_are_counted_in_the_note():
    nan = float("nan")
    # c0: a NaN in arm a, c1: a NaN in arm b -> 2 runs without a value, 2 pairs left (c2, c3)
    summary = _runs([nan, 0.8, 0.7, 0.9], [0.85, nan, 0.75, 0.92])
    across = compute_stats(summary, [("r/base", "c/base")], ["image_auroc"], min_units=2).iloc[0]
    assert across["n"] == 2
    assert "2 run(s) without a image_auroc value (NaN) dropped with their partner" in across["note"]
    assert "without a partner" not in across["note"]
    # c3 of arm b missing: one run without its partner
    lonely = _runs([0.8, 0.7, 0.9], [0.85, 0.71])
    across = compute_stats(lonely, [("r/base", "c/base")], ["image_auroc"], min_units=2).iloc[0]
    assert across["n"] == 2 and across["note"] == "1 run(s) without a partner sharing (category, seed) dropped"


def test_two_summary_rows_of_one_run_are_refused_even_with_different_values():
    summary = pd.concat([_runs([0.8, 0.7], [0.85, 0.75]),
                         pd.DataFrame([{"arm": "r/base", "category": "c0", "seed": 0, "image_auroc": 0.1}])])
    from rd.errors import RDError

    with pytest.raises(RDError, match="two rows for arm r/base, category c0, seed 0"):
        compute_stats(summary, [("r/base", "c/base")], ["image_auroc"], min_units=2)


def test_bootstrap_defaults_are_10000_resamples_seeded_0(tmp_path):
    """The documented bootstrap: 10,000 resamples of the n differences, percentile 2.5/97.5,
    numpy's default_rng(0) (written out here rather than calling rd.stats.bootstrap_ci)."""
    a = [0.80, 0.70, 0.90, 0.60, 0.75]
    b = [0.82, 0.74, 0.89, 0.66, 0.80]
    d = np.array(b) - np.array(a)
    idx = np.random.default_rng(0).integers(0, 5, size=(10_000, 5))
    expected = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
    frame = compute_stats(_runs(a, b), [("r/base", "c/base")], ["image_auroc"], min_units=2)
    across = frame[frame["reading"] == "across_categories"].iloc[0]
    assert (across["boot_ci_low"], across["boot_ci_high"]) == (expected[0], expected[1])
    # write_stats: the same defaults, and only the metrics asked for
    from rd.stats import read_stats, write_stats

    summary = _runs(a, b).assign(backbone=lambda f: f["arm"].str.split("/").str[0],
                                 setting=lambda f: f["arm"].str.split("/").str[1], pixel_auroc=0.9, aupro=0.8)
    summary.to_csv(tmp_path / "summary.csv", index=False)
    out = write_stats(tmp_path / "summary.csv", [("r/base", "c/base")], tmp_path / "stats.csv", ["image_auroc"])
    assert set(out["metric"]) == {"image_auroc"} and set(read_stats(tmp_path / "stats.csv")["metric"]) == {"image_auroc"}
    row = out[out["reading"] == "across_categories"].iloc[0]
    assert (row["boot_ci_low"], row["boot_ci_high"]) == (expected[0], expected[1])
    # the same defaults in paired_test and bootstrap_ci called directly, and per category (n = seeds)
    from rd.stats import bootstrap_ci

    direct = paired_test(np.array(a), np.array(b), min_units=2)
    assert (direct["boot_ci_low"], direct["boot_ci_high"]) == (expected[0], expected[1])
    assert bootstrap_ci(d) == (expected[0], expected[1])
    seeds = pd.DataFrame([{"arm": arm, "category": "c0", "seed": s, "image_auroc": v[s]}
                          for arm, v in (("r/base", a), ("c/base", b)) for s in range(5)])
    per_cat = compute_stats(seeds, [("r/base", "c/base")], ["image_auroc"], min_units=2)
    row = per_cat[per_cat["reading"] == "per_category:c0"].iloc[0]
    assert (row["boot_ci_low"], row["boot_ci_high"]) == (expected[0], expected[1])


def test_spread_is_relative_to_the_larger_arm():
    """The tolerance is 1e-9 times the largest |value| of either arm: a spread of 1e-10 next to
    values of 1 is rounding whichever arm holds the 1s; a spread of 1e-9 next to values of 100
    is too (1e-9 <= 1e-7), while dividing instead of multiplying would call it real."""
    ones = np.array([1.0, 1.0 + 1e-10, 1.0])
    for a, b in ((np.zeros(3), ones), (ones, np.zeros(3))):
        assert math.isnan(paired_test(a, b, min_units=2)["p"])
    a = np.array([100.0, 101.0, 102.0])
    assert math.isnan(paired_test(a, a + np.array([1.0, 1.0 + 1e-9, 1.0]), min_units=2)["p"])


def test_wilcoxon_runs_from_6_differences_with_the_exact_p():
    """Six positive differences: every sign pattern is equally likely under H0, the observed one
    is the most extreme of 2^6, so the exact two-sided p = 2 / 64 = 0.03125. Five: not run."""
    a = np.array([0.80, 0.70, 0.90, 0.60, 0.75, 0.85])
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    row = paired_test(a, a + d, min_units=2)
    assert row["wilcoxon_p"] == pytest.approx(0.03125, abs=1e-12)
    assert math.isnan(paired_test(a[:5], a[:5] + d[:5], min_units=2)["wilcoxon_p"])
    # six differences but one zero: 5 non-zero, not run
    assert math.isnan(paired_test(a, a + np.array([0.0, 0.02, 0.03, 0.04, 0.05, 0.06]), min_units=2)["wilcoxon_p"])


# --------------------------------------------------------------------------- lr schedule
def test_cosine_schedule_with_warmup_by_hand():
    """2 steps/epoch × 3 epochs = 6 steps, warm-up 1 epoch = 2 steps, lr 0.01 -> min_lr 0.001
    (floor 0.1). Warm-up (step + 1) / 3: 1/3, 2/3; then progress (step - 2) / 4 and
    0.1 + 0.9 · (1 + cos(pi · progress)) / 2: step 2 -> 1, step 3 -> 0.1 + 0.45 (1 + cos(pi/4))
    = 0.868198, step 4 -> 0.55, step 6 and later -> 0.1 (progress capped at 1)."""
    from rd.optim import make_optimizer, make_scheduler

    net = torch.nn.Linear(2, 2)
    setting = {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_epochs": 1, "min_lr": 0.001}
    factor = make_scheduler(make_optimizer(net, setting), setting, steps_per_epoch=2, epochs=3).lr_lambdas[0]
    expected = [1 / 3, 2 / 3, 1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55,
                0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)), 0.1, 0.1]
    assert [factor(s) for s in range(8)] == pytest.approx(expected, abs=1e-12)
    assert expected[3] == pytest.approx(0.868198, abs=1e-6)
    const = {"optimizer": "adam", "lr": 0.005}
    assert make_scheduler(make_optimizer(net, const), const, 2, 3).lr_lambdas[0](4) == 1.0


def test_the_hand_example_gets_no_test_by_default():
    """The pins above pass min_units=2 to check the t-test arithmetic on 3-4 units; the
    pipeline's own default refuses a test there (5 units needed) and keeps the descriptive row."""
    a = np.array([0.90, 0.91, 0.92, 0.93])
    row = paired_test(a, a + np.array([1e-6, -1e-6, 0.5e-6, 0.0]))
    assert math.isnan(row["p"]) and row["note"].startswith("too few units for a test (n = 4")
    assert row["mean_diff"] == pytest.approx(0.125e-6, rel=1e-6)


# --------------------------------------------------------------------------- initialisation
def test_rd4ad_init_is_kaiming_fan_out_and_unit_norms():
    """Conv2d(16 -> 64, 3×3): fan_out = 64·9 = 576, std sqrt(2 / 576) = 0.058926 (fan_in would
    be 16·9 = 144, std 0.117851); 9216 weights put the sample std within ~1 % of it. Norm
    layers set to weight 1, bias 0 even when they held other values; ConvTranspose2d untouched."""
    from rd.method.init import rd4ad_init

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3), torch.nn.BatchNorm2d(64), torch.nn.GroupNorm(4, 64),
                              torch.nn.ConvTranspose2d(64, 8, 2))
    with torch.no_grad():
        for norm in (net[1], net[2]):
            norm.weight.fill_(3.0)
            norm.bias.fill_(-2.0)
    before = net[3].weight.detach().clone()
    rd4ad_init(net)
    assert net[0].weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert abs(net[0].weight.mean().item()) < 0.003
    for norm in (net[1], net[2]):
        assert torch.equal(norm.weight, torch.ones(64)) and torch.equal(norm.bias, torch.zeros(64))
    assert torch.equal(net[3].weight, before)


def test_trunc_normal_init_is_std_0_02_with_zero_bias():
    """Linear(256, 256): 65536 weights of std 0.02 (the ±2 cut is 100 std away: no effect),
    the bias set to 0 (PyTorch's default bias is not); a layer without bias is fine."""
    from rd.method.init import trunc_normal_init

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Conv2d(4, 4, 1, bias=False))
    net.apply(trunc_normal_init)
    assert net[0].weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.equal(net[0].bias, torch.zeros(256))
    assert net[1].bias is None and net[1].weight.std().item() < 0.05


# --------------------------------------------------------------------------- plotted curves
def test_curves_for_plots_have_at_most_1000_points_by_default():
    """Curves whose steps all have the same length (labels alternate along the score order) are
    downsampled to exactly max_points: 1000 by default."""
    from rd.metrics import pro_curve, roc_points

    labels = np.arange(4000) % 2 == 0
    assert len(roc_points(np.arange(4000.0), labels)[0]) == 1000
    # one region of 4000 pixels and 4000 normal pixels, scores interleaved: PRO and FPR steps
    # are both 1/4000; 2403 exact points up to FPR 0.3
    masks = np.zeros((1, 80, 100), dtype=bool)
    masks[0, :, :50] = True
    maps = np.zeros((1, 80, 100))
    maps[masks] = np.arange(4000) * 2.0 + 1
    maps[~masks] = np.arange(4000) * 2.0
    assert len(pro_curve(maps, masks, max_points=None)[0]) == 2403
    assert len(pro_curve(maps, masks)[0]) == 1000


# --------------------------------------------------------------------------- input checks
def test_metric_errors_name_the_input_and_the_metric():
    """Callers show these messages to users: each names the array and the metric at fault."""
    from rd import metrics as mt

    nan_map = np.zeros((1, 2, 2))
    nan_map[0, 0, 0] = np.nan
    mask = np.array([[[True, False], [False, False]]])
    cases = [
        (lambda: mt.image_auroc([np.nan, 0.2], [0, 1]), "^scores contain NaN or infinite values$"),
        (lambda: mt.image_auroc([0.1, 0.2], [0, 2]), "^labels must be boolean or 0/1"),
        (lambda: mt.pixel_auroc(nan_map, mask), "^maps contain NaN or infinite values$"),
        (lambda: mt.pixel_auroc(np.zeros((1, 2, 2)), mask * 2), "^masks must be boolean or 0/1"),
        (lambda: mt.image_auroc([0.1, 0.2], [1, 1]),
         "^image AUROC needs both normal and anomalous samples, but all 2 are anomalous$"),
        (lambda: mt.image_auroc([0.1, 0.2, 0.3], [0, 0, 0]), "^image AUROC needs .* but all 3 are normal$"),
        (lambda: mt.pixel_auroc(np.zeros((1, 2, 2)), ~mask | mask), "^pixel AUROC needs both"),
        (lambda: mt.average_precision([0.1, 0.2], [0, 0]), "^average precision needs both"),
        (lambda: mt.pixel_average_precision(np.zeros((1, 2, 2)), mask & False), "^pixel average precision needs"),
        (lambda: mt.f1_max([0.1, 0.2], [1, 1]), "^F1max needs both"),
        (lambda: mt.roc_points([0.1, 0.2], [0, 0]), "^ROC curve needs both"),
        (lambda: mt.image_auroc(["a", "b"], [0, 1]), "^scores must be real numbers"),
        (lambda: mt.image_auroc(np.array([1 + 1j, 2]), [0, 1]), "^scores must be real numbers"),
        (lambda: mt.image_auroc(np.zeros((2, 2)), [0, 1]), "^scores and labels must be 1-D"),
        (lambda: mt.image_auroc([0.1, 0.2], np.array([[0, 1]])), "^scores and labels must be 1-D"),
        (lambda: mt.aupro(np.zeros(4), np.array([1, 0, 0, 0])), "^maps must be N×H×W"),
        (lambda: mt.aupro(np.zeros((0, 2, 2)), np.zeros((0, 2, 2), bool)), "non-empty, got shape \\(0, 2, 2\\)"),
        (lambda: mt.aupro(np.zeros((1, 2, 2)), mask, fpr_limit=1.5), "^fpr_limit must be in \\(0, 1\\], got 1.5$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_integer_float16_and_single_image_input_mean_the_same():
    """Integer and float16 scores are the same numbers as float64; an H×W map is one image."""
    from rd import metrics as mt

    labels = np.array([0, 1, 0, 1, 1])
    ints = np.array([1, 3, 2, 2, 5])
    # pairs (pos 3, 2, 5 vs neg 1, 2): 3 > both, 2 > 1 and ties 2, 5 > both: (2 + 1.5 + 2) / 6
    assert mt.image_auroc(ints, labels) == pytest.approx(5.5 / 6, abs=1e-12)
    assert mt.image_auroc(ints.astype(np.float16), labels) == pytest.approx(5.5 / 6, abs=1e-12)
    amap = np.array([[0.9, 0.1], [0.2, 0.8]])
    mask = np.array([[True, False], [False, False]])
    assert mt.pixel_auroc(amap, mask) == 1.0 and mt.aupro(amap, mask) == 1.0
    # defects 0.2, 0.8 against normals 0.9, 0.1: each beats 0.1 only, 2 of 4 pairs
    assert mt.pixel_auroc(amap, np.array([[False, False], [True, True]])) == 0.5


def test_downsample_spaces_points_by_path_length_by_hand():
    """Keep the first point at or past each of max_points evenly spaced path lengths.
    x = 0, 1, 1.1, 1.2 (y flat): lengths 0, 1, 1.1, 1.2; 3 targets 0, 0.6, 1.2 -> points 0, 1, 3.
    x = 0..5: 5 targets 0, 1.25, 2.5, 3.75, 5 -> points 0, 2, 3, 4, 5.
    A curve of exactly max_points points, and max_points = 2, by the same rule."""
    from rd.metrics import _downsample

    x = np.array([0.0, 1.0, 1.1, 1.2])
    y = np.zeros(4)
    np.testing.assert_array_equal(_downsample(x, y, 3)[0], [0.0, 1.0, 1.2])
    np.testing.assert_array_equal(_downsample(x, y, 4)[0], x)      # 4 points fit: unchanged
    np.testing.assert_array_equal(_downsample(x, y, 2)[0], [0.0, 1.2])
    # the same lengths walked along y
    np.testing.assert_array_equal(_downsample(y, x, 3)[1], [0.0, 1.0, 1.2])
    steps = np.arange(6.0)
    np.testing.assert_array_equal(_downsample(steps, np.zeros(6), 5)[0], [0, 2, 3, 4, 5])


def test_f1_max_by_hand_with_the_top_score_a_normal_one():
    """Scores 0.9 ... 0.3, labels 0 1 0 0 0 0 1. At t = 0.9 precision and recall are both 0 (F1 0,
    not 0/0); t = 0.8: P = R = 1/2, F1 1/2 (the best; P + R is exactly 1); then 0.4, 1/3, 2/7,
    1/4 and at t = 0.3: P 2/7, R 1, F1 4/9."""
    from rd.metrics import f1_max_threshold

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    labels = np.array([0, 1, 0, 0, 0, 0, 1])
    best, threshold = f1_max_threshold(scores, labels)
    assert (best, threshold) == (pytest.approx(0.5, abs=1e-12), 0.8)


def test_pro_curve_of_one_row_by_hand_top_score_normal_lowest_a_defect():
    """One 1×4 image: 0.9 normal, 0.7 defect, 0.3 normal, 0.1 defect; the two defect pixels are
    two regions (not adjacent), 2 normal pixels. From the top: t 0.9 FPR 1/2 PRO 0; t 0.7 PRO
    1/2; t 0.3 FPR 1; t 0.1 PRO 1: the curve ends at (1, 1) although the last defect pixel
    scores below every normal one. Area to FPR 1: 1/2 · 1/2 = 1/4; to 0.75 (end interpolated
    at PRO 1/2): 1/4 · 1/2 / 0.75 = 1/6."""
    from rd.metrics import aupro, pro_curve

    maps = np.array([[[0.9, 0.7, 0.3, 0.1]]])
    masks = np.array([[[False, True, False, True]]])
    fpr, pro = pro_curve(maps, masks, fpr_limit=1.0, max_points=None)
    np.testing.assert_allclose(fpr, [0, 0.5, 0.5, 1, 1], atol=1e-12)
    np.testing.assert_allclose(pro, [0, 0, 0.5, 0.5, 1], atol=1e-12)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.25, abs=1e-12)
    assert aupro(maps, masks, fpr_limit=0.75) == pytest.approx(1 / 6, abs=1e-12)


# --------------------------------------------------------------------------- optimizer
def test_optimizers_and_weight_decay_groups_as_named():
    """baseline: Adam lr 0.005, betas (0.5, 0.999), no decay; AdamW decays only the 2-D weight
    (not the bias or the LayerNorm weight); SGD takes the momentum; all fused."""
    from rd.optim import make_optimizer, weight_decay_rule

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    adam = make_optimizer(net, {"optimizer": "adam", "lr": 0.005})
    assert type(adam) is torch.optim.Adam
    assert (adam.defaults["lr"], adam.defaults["betas"], adam.defaults["fused"]) == (0.005, (0.5, 0.999), True)
    assert weight_decay_rule({"optimizer": "adam", "lr": 0.005}) == "no weight decay"
    tuned = {"optimizer": "adamw", "lr": 0.002, "betas": [0.9, 0.99], "weight_decay": 0.05}
    adamw = make_optimizer(net, tuned)
    assert type(adamw) is torch.optim.AdamW
    assert (adamw.defaults["lr"], adamw.defaults["betas"], adamw.defaults["fused"]) == (0.002, (0.9, 0.99), True)
    decayed = [p for g in adamw.param_groups if g["weight_decay"] == 0.05 for p in g["params"]]
    assert len(decayed) == 1 and decayed[0] is net[0].weight
    assert sum(len(g["params"]) for g in adamw.param_groups if g["weight_decay"] == 0) == 3
    assert weight_decay_rule(tuned).startswith("weight decay 0.05 on weights with ndim >= 2; none on biases")
    sgd = make_optimizer(net, {"optimizer": "sgd", "lr": 0.1, "momentum": 0.8})
    assert type(sgd) is torch.optim.SGD
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["fused"]) == (0.1, 0.8, True)


def test_warmup_as_long_as_the_run_and_a_one_step_run():
    """2 steps × 1 epoch with 1 warm-up epoch: warm-up is capped at total - 1 = 1 step, so
    step 0 -> 1/2, step 1 -> 1 (progress 0), step 2 -> the floor 0.1 (progress 1 / 1). One step
    in all (1 × 1, no warm-up): step 0 -> 1, step 1 -> the floor. A warm-up longer than the run
    is refused."""
    from rd.errors import RDError
    from rd.optim import make_optimizer, make_scheduler

    net = torch.nn.Linear(2, 2)
    setting = {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_epochs": 1, "min_lr": 0.001}
    factor = make_scheduler(make_optimizer(net, setting), setting, steps_per_epoch=2, epochs=1).lr_lambdas[0]
    assert [factor(s) for s in range(3)] == pytest.approx([0.5, 1.0, 0.1], abs=1e-12)
    no_warmup = {**setting, "warmup_epochs": 0}
    factor = make_scheduler(make_optimizer(net, no_warmup), no_warmup, steps_per_epoch=1, epochs=1).lr_lambdas[0]
    assert [factor(s) for s in range(2)] == pytest.approx([1.0, 0.1], abs=1e-12)
    with pytest.raises(RDError, match="warmup_epochs"):
        make_scheduler(make_optimizer(net, setting), {**setting, "warmup_epochs": 2}, steps_per_epoch=2, epochs=1)


def _rd4ad_reference(maps, masks, num_thresholds=200, fpr_limit=0.3):
    """The official compute_pro written plainly: per image, per threshold, per region."""
    from scipy import ndimage
    from sklearn.metrics import auc

    per_image = []
    for amap, mask in zip(maps, masks):
        if not mask.any():
            continue
        lo, hi = amap.min(), amap.max()
        if hi == lo or mask.all():
            per_image.append(np.nan)
            continue
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        xs, ys = [], []
        for t in np.arange(lo, hi, (hi - lo) / num_thresholds):
            above = amap > t
            pro = np.mean([(above & (labels == r)).sum() / (labels == r).sum() for r in range(1, n + 1)])
            fpr = (above & ~mask).sum() / (~mask).sum()
            if fpr < fpr_limit:
                xs.append(fpr)
                ys.append(pro)
        per_image.append(np.nan if len(xs) < 2 or max(xs) == 0 else auc(np.array(xs) / max(xs), ys))
    return float(np.mean(per_image))


def test_pro_rd4ad_matches_the_official_loop():
    """A good image first, then images with several regions, scores not starting at 0 and
    lying on the threshold grid (ties at a threshold count as not above it), FPR passing 0.3."""
    rng = np.random.default_rng(4)
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[1, 1:4, 1:4] = masks[1, 7:10, 6:11] = True
    masks[2, 0:2, 0:5] = masks[2, 8:12, 9:12] = masks[2, 5, 5] = True
    maps = 0.5 + np.round(np.clip(rng.random((3, 12, 12)) * 0.7 + 0.3 * masks, 0, 1) * 40) / 40
    maps[:, 11, 0], maps[:, 11, 1] = 0.5, 1.5   # normal pixels: min 0.5, max 1.5, thresholds 0.5 + k/200
    expected = _rd4ad_reference(maps, masks)
    assert 0.2 < expected < 0.95
    assert pro_rd4ad(maps, masks) == pytest.approx(expected, abs=1e-12)
    # on continuous scores the grid of 200 thresholds itself matters (on the 1/40 grid above
    # any grid finer than 1/40 visits the same points)
    smooth = rng.random((3, 12, 12)) + 0.4 * masks
    assert pro_rd4ad(smooth, masks) == pytest.approx(_rd4ad_reference(smooth, masks, 200, 0.3), abs=1e-12)
    assert pro_rd4ad(maps, masks, num_thresholds=50, fpr_limit=0.5) == pytest.approx(
        _rd4ad_reference(maps, masks, 50, 0.5), abs=1e-12)
    # a constant map is NaN; one normal pixel is enough for a number
    assert math.isnan(pro_rd4ad(np.ones((1, 2, 2)), np.eye(2, dtype=bool)[None]))
    one_normal = np.array([[[0.9, 0.1], [0.7, 0.5]]])
    one_mask = np.array([[[True, True], [True, False]]])
    assert pro_rd4ad(one_normal, one_mask, fpr_limit=1.5) == pytest.approx(
        _rd4ad_reference(one_normal, one_mask, fpr_limit=1.5), abs=1e-12)
    # two kept points are enough; one (or only FPR 0) is NaN
    assert pro_rd4ad(one_normal, one_mask, num_thresholds=2, fpr_limit=1.5) == pytest.approx(
        _rd4ad_reference(one_normal, one_mask, 2, 1.5), abs=1e-12)
    assert math.isnan(pro_rd4ad(one_normal, one_mask, num_thresholds=1, fpr_limit=1.5))
    assert math.isnan(pro_rd4ad(one_normal, one_mask))
