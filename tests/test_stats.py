"""rd.stats: paired tests, Holm, Wilcoxon, d_z, bootstrap, degenerate cases; every p recomputed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rd.aggregate import read_summary, write_summary
from rd.errors import RDError
from helpers.report_fixtures import make_fake_results
from rd.stats import STATS_COLUMNS, compute_stats, holm, paired_test, read_stats, write_stats

ARMS = ("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned")
COMPARISONS = [("resnet18/baseline", "convnext_pico/baseline"), ("resnet18/baseline", "convnext_pico/tuned"),
               ("convnext_pico/baseline", "convnext_pico/tuned")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    fake = make_fake_results(root, categories=("brick", "grass", "gravel"), arms=ARMS, seeds=(0, 1, 2, 3, 4, 5, 6),
                             epochs=2, failure_k=1, failure_size=8, benchmarks=False)
    summary = root / "summary.csv"
    write_summary(fake["runs"], out=summary)
    out = root / "stats.csv"
    write_stats(summary, COMPARISONS, out=out)
    return summary, out


# --------------------------------------------------------------------------- Holm by hand
def test_holm_hand_example():
    # sorted p: 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1, ties keep order, NaN excluded from the family (m = 2 here)
    assert holm([0.6, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, float("nan"), 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert np.isnan(holm([float("nan")])).all() and holm([]).size == 0
    # four hypotheses: 0.005*4=0.02, 0.011*3=0.033, 0.02*2=0.04, 0.04*1=0.04
    assert holm([0.04, 0.005, 0.02, 0.011]) == pytest.approx([0.04, 0.02, 0.04, 0.033])


# --------------------------------------------------------------------------- every p recomputed
def test_every_p_recomputed_from_summary(files):
    summary_path, stats_path = files
    summary = read_summary(summary_path)
    st = read_stats(stats_path)
    assert list(st.columns) == STATS_COLUMNS
    metrics = set(st["metric"])
    assert {"image_auroc", "pixel_auroc", "aupro"} <= metrics
    # 3 comparisons x metrics x (1 across + 3 per-category)
    assert len(st) == 3 * len(metrics) * 4
    checked = 0
    for row in st.to_dict("records"):
        a = summary[summary["arm"] == row["arm_a"]].set_index(["category", "seed"])[row["metric"]]
        b = summary[summary["arm"] == row["arm_b"]].set_index(["category", "seed"])[row["metric"]]
        pair = pd.concat({"a": a, "b": b}, axis=1).dropna()
        if row["reading"] == "across_categories":
            pair = pair.groupby(level="category").mean()
        else:
            cat = row["reading"].split(":", 1)[1]
            assert row["reading"] == f"per_category:{cat}"
            pair = pair.xs(cat, level="category")
        assert row["n"] == len(pair)
        d = pair["b"] - pair["a"]
        assert row["mean_diff"] == pytest.approx(d.mean(), abs=1e-12)
        assert (row["diff_min"], row["diff_max"]) == pytest.approx((d.min(), d.max()), abs=1e-12)
        if len(pair) < 5:  # descriptive only: no p, no CI, no p-based verdict
            assert math.isnan(row["p"]) and math.isnan(row["ci_low"]) and math.isnan(row["p_holm"])
            assert row["note"].startswith("too few units for a test")
            assert row["verdict"] == ("too few units" if row["role"] == "primary" else "")
            checked += 1
            continue
        res = sps.ttest_rel(pair["b"], pair["a"])
        ci = res.confidence_interval(0.95)
        assert row["p"] == pytest.approx(res.pvalue, abs=1e-9, rel=0)
        assert row["t"] == pytest.approx(res.statistic, rel=1e-9)
        assert row["ci_low"] == pytest.approx(ci.low, abs=1e-9) and row["ci_high"] == pytest.approx(ci.high, abs=1e-9)
        assert row["d_z"] == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-9)
        if len(pair) >= 6:
            assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(d).pvalue, abs=1e-9)
        else:
            assert math.isnan(row["wilcoxon_p"]) and "< 6" in row["wilcoxon_note"]
        checked += 1
    assert checked == len(st)
    # Holm within one reading of the primary metric, across the 3 comparisons; exploratory rows
    # (every other metric) get neither p_holm nor a verdict
    primary = st[st["role"] == "primary"]
    assert set(primary["metric"]) == {"image_auroc"}
    for _, g in primary.groupby("reading"):
        assert len(g) == 3
        assert g["p_holm"].to_numpy() == pytest.approx(holm(g["p"].to_numpy()), abs=1e-12, nan_ok=True)
    exploratory = st[st["role"] == "exploratory"]
    assert exploratory["p_holm"].isna().all() and (exploratory["verdict"] == "").all()
    assert exploratory["mde_80"].isna().all()


def test_readings_and_directions(files):
    _, stats_path = files
    st = read_stats(stats_path)
    across = st[st["reading"] == "across_categories"]
    assert (across["n"] == 3).all() and (across["unit"] == "categories").all()
    per = st[st["reading"].str.startswith("per_category:")]
    assert (per["n"] == 7).all() and (per["unit"] == "seeds").all()
    # with 7 seeds, Wilcoxon runs per category; with 3 categories it does not
    assert per["wilcoxon_p"].notna().all()
    assert across["wilcoxon_p"].isna().all()
    assert across["wilcoxon_note"].str.contains("n = 3 < 6: not run").all()
    # bootstrap only where n >= 5
    assert per["boot_ci_low"].notna().all() and across["boot_ci_low"].isna().all()
    row = st.iloc[0]
    assert row["comparison"] == f"{row['arm_b']} vs {row['arm_a']}"
    assert row["mean_diff"] == pytest.approx(row["mean_b"] - row["mean_a"])


# --------------------------------------------------------------------------- degenerate cases
def test_all_differences_zero_is_nan_with_a_note():
    r = paired_test([0.9, 0.8, 0.95, 0.7, 0.6], [0.9, 0.8, 0.95, 0.7, 0.6])
    assert r["n"] == 5 and r["mean_diff"] == 0.0 and r["verdict"] == "no difference"
    assert all(math.isnan(r[k]) for k in ("t", "p", "ci_low", "ci_high", "d_z"))
    assert "exactly 0" in r["note"]


def test_constant_nonzero_difference_is_nan_with_a_note():
    r = paired_test([1.0] * 5, [0.5] * 5)
    assert math.isnan(r["p"]) and "sd is 0" in r["note"] and r["mean_diff"] == -0.5 and r["verdict"] == "no test"


def test_n1_and_n0():
    r = paired_test([0.9], [0.95])
    assert r["n"] == 1 and r["mean_diff"] == pytest.approx(0.05) and math.isnan(r["p"])
    assert "too few units for a test (n = 1 unit;" in r["note"] and r["verdict"] == "too few units"
    r = paired_test([], [])
    assert r["n"] == 0 and math.isnan(r["mean_diff"]) and "no runs" in r["note"]


def test_wilcoxon_zero_differences_dropped():
    a = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3])
    b = a + np.array([0, 0.01, 0.02, 0.0, 0.03, 0.01, 0.02])  # 5 non-zero of 7
    r = paired_test(a, b)
    assert math.isnan(r["wilcoxon_p"]) and "non-zero" in r["wilcoxon_note"]
    assert r["p"] == pytest.approx(sps.ttest_rel(b, a).pvalue, abs=1e-12)


def test_degenerate_summary_does_not_crash():
    rows = []
    for cat in ("a", "b", "e", "f", "g"):
        for seed in range(5):
            rows.append({"category": cat, "arm": "x/base", "seed": seed, "image_auroc": 1.0})
            rows.append({"category": cat, "arm": "y/base", "seed": seed, "image_auroc": 1.0})
    rows.append({"category": "c", "arm": "x/base", "seed": 0, "image_auroc": 0.9})  # only one arm
    rows.append({"category": "d", "arm": "x/base", "seed": 0, "image_auroc": 0.9})
    rows.append({"category": "d", "arm": "y/base", "seed": 0, "image_auroc": 0.8})  # n = 1
    st = compute_stats(pd.DataFrame(rows), [("x/base", "y/base")], metrics=["image_auroc"])
    by = st.set_index("reading")
    per = st[st["reading"] != "across_categories"]
    assert per["p"].isna().all() and per["p_holm"].isna().all()
    # across categories: a, b, e, f, g differ by 0, d by -0.1 (c has no pair): a real test with n = 6
    assert by.loc["across_categories", "n"] == 6 and by.loc["across_categories", "p"] > 0
    assert by.loc["per_category:c", "n"] == 0 and "no runs" in by.loc["per_category:c", "note"]
    assert by.loc["per_category:d", "n"] == 1 and "n = 1 seed;" in by.loc["per_category:d", "note"]
    assert by.loc["per_category:a", "verdict"] == "no difference"
    assert "exactly 0" in by.loc["per_category:a", "note"]
    assert "without a partner" in by.loc["across_categories", "note"]


def test_bootstrap_is_seeded():
    a = np.linspace(0.8, 0.9, 8)
    b = a + np.array([0.01, -0.02, 0.03, 0.0, 0.02, 0.01, 0.04, -0.01])
    r1, r2 = paired_test(a, b), paired_test(a, b)
    assert r1["boot_ci_low"] == r2["boot_ci_low"] and r1["boot_ci_high"] == r2["boot_ci_high"]
    assert r1["boot_ci_low"] < (b - a).mean() < r1["boot_ci_high"]


def test_bad_comparisons_are_clear_errors(files):
    summary_path, _ = files
    summary = read_summary(summary_path)
    with pytest.raises(RDError, match="has no run in the summary"):
        compute_stats(summary, [("resnet18/baseline", "vit/baseline")])
    with pytest.raises(RDError, match="itself"):
        compute_stats(summary, [("resnet18/baseline", "resnet18/baseline")])
    empty = compute_stats(summary, [])
    assert list(empty.columns) == STATS_COLUMNS and empty.empty


def test_cli_stats(files, tmp_path):
    from rd.cli import main

    summary_path, stats_path = files
    out = tmp_path / "s.csv"
    assert main(["stats", "--summary", str(summary_path), "--comparison", "resnet18/baseline",
                 "convnext_pico/tuned", "--out", str(out)]) == 0
    st = read_stats(out)
    ref = read_stats(stats_path)
    one = ref[ref["comparison"] == "convnext_pico/tuned vs resnet18/baseline"].reset_index(drop=True)
    assert st["p"].to_numpy() == pytest.approx(one["p"].to_numpy(), abs=1e-12, nan_ok=True)
    primary = st["role"] == "primary"  # a family of one: p_holm = p
    assert st.loc[primary, "p_holm"].to_numpy() == pytest.approx(st.loc[primary, "p"].to_numpy(), abs=1e-12,
                                                                  nan_ok=True)
    # no comparison (the CLI allows it): a header-only file that reads back
    assert main(["stats", "--summary", str(summary_path), "--out", str(out)]) == 0
    assert read_stats(out).empty and list(read_stats(out).columns) == STATS_COLUMNS


# --------------------------------------------------------------------------- primary metric, too few units
def _summary(n_categories: int, seeds=(0, 1, 2), shift: float = 0.03) -> pd.DataFrame:
    rng = np.random.default_rng(n_categories)
    rows = []
    for c in range(n_categories):
        for s in seeds:
            base = float(rng.uniform(0.7, 0.9))
            for arm, extra in (("x/base", 0.0), ("y/base", shift + float(rng.normal(0, 0.01)))):
                rows.append({"category": f"c{c}", "arm": arm, "seed": s, "image_auroc": base + extra,
                             "pixel_auroc": base + extra / 2})
    return pd.DataFrame(rows)


def test_two_categories_are_too_few_units_and_get_no_p_verdict():
    st = compute_stats(_summary(2), [("x/base", "y/base")], metrics=["image_auroc", "pixel_auroc"])
    row = st[(st["reading"] == "across_categories") & (st["metric"] == "image_auroc")].iloc[0]
    assert row["n"] == 2 and row["verdict"] == "too few units"
    assert row["note"] == "too few units for a test (n = 2 categories; 5 needed)"
    assert math.isnan(row["p"]) and math.isnan(row["p_holm"]) and math.isnan(row["ci_low"])
    assert row["diff_min"] <= row["mean_diff"] <= row["diff_max"]
    assert math.isfinite(row["mde_80"]) and row["n_for_observed"] >= 2  # what a larger run would need
    st5 = compute_stats(_summary(6), [("x/base", "y/base")], metrics=["image_auroc"])
    across = st5[st5["reading"] == "across_categories"].iloc[0]
    assert across["verdict"] in ("significant", "not significant") and math.isfinite(across["p_holm"])


def test_primary_metric_carries_the_only_verdicts_and_holm_family():
    summary = _summary(6)
    third = summary[summary["arm"] == "x/base"].copy()   # a third arm: two distinct pairs
    third["arm"] = "z/base"
    noise = np.random.default_rng(7).normal(0.01, 0.01, len(third))
    third["image_auroc"] += noise
    third["pixel_auroc"] += noise
    summary = pd.concat([summary, third], ignore_index=True)
    comps = [("x/base", "y/base"), ("x/base", "z/base")]
    st = compute_stats(summary, comps, metrics=["image_auroc", "pixel_auroc"], primary_metric="pixel_auroc")
    across = st[st["reading"] == "across_categories"].set_index(["metric", "comparison"])
    assert (across.loc["pixel_auroc", "role"] == "primary").all()
    assert (across.loc["image_auroc", "role"] == "exploratory").all()
    assert (across.loc["image_auroc", "verdict"] == "").all() and across.loc["image_auroc", "p_holm"].isna().all()
    assert across.loc["image_auroc", "p"].notna().all()  # the estimate stays, only the verdict goes
    # one family of the two primary comparisons: Holm over both
    assert across.loc["pixel_auroc", "p_holm"].to_numpy() == pytest.approx(
        holm(across.loc["pixel_auroc", "p"].to_numpy()))
    with pytest.raises(RDError, match="not a reported metric"):
        compute_stats(summary, comps, metrics=["image_auroc"], primary_metric="accuracy")


def test_config_check_knows_primary_metric():
    from pathlib import Path

    import yaml

    from rd.config_check import InvalidConfig, check_config

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    check_config(dict(cfg), root / "workflow" / "schemas" / "config.schema.yaml")
    checked = dict(cfg)
    check_config(checked, root / "workflow" / "schemas" / "config.schema.yaml")
    assert checked["primary_metric"] == "image_auroc"
    with pytest.raises(InvalidConfig, match="primary_metric"):
        check_config(dict(cfg, primary_metric="accuracy"), root / "workflow" / "schemas" / "config.schema.yaml")


# --------------------------------------------------------------------------- power
def test_n_for_observed_matches_the_published_paired_t_sample_size():
    """Independent values: a two-sided paired t-test at α = 0.05 with 80 % power needs n = 34
    pairs for d_z = 0.5 and n = 15 for d_z = 0.8 (Cohen 1988; G*Power's 'matched pairs')."""
    from rd.stats import n_needed

    assert n_needed(0.5, 1.0) == 34 and n_needed(-0.5, 1.0) == 34
    assert n_needed(0.8, 1.0) == 15
    assert n_needed(0.005, 0.01) == 34  # scale-free: only d/sd matters
    assert math.isnan(n_needed(0.0, 1.0))


def test_mde_80_equals_an_independent_power_computation():
    """At the mde, the power from a direct numerical integration of the t-test's rejection
    probability (no noncentral-t distribution) is 0.80, and a Monte-Carlo run of the t-test agrees."""
    from scipy import integrate

    from rd.stats import mde

    n, sd = 10, 0.02
    delta = mde(n, sd)
    df = n - 1
    crit = sps.t.ppf(0.975, df)
    nc = delta * math.sqrt(n) / sd

    def reject_given_s(u):  # u = chi2 draw; t = (z + nc) / sqrt(u/df); reject when |t| > crit
        scale = crit * math.sqrt(u / df)
        return sps.norm.sf(scale - nc) + sps.norm.cdf(-scale - nc)

    power, _ = integrate.quad(lambda u: reject_given_s(u) * sps.chi2.pdf(u, df), 0, np.inf)
    assert power == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(0)
    d = rng.normal(delta, sd, size=(40_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(t) > crit) == pytest.approx(0.8, abs=0.01)
    assert math.isnan(mde(1, sd)) and math.isnan(mde(5, 0.0))


# --------------------------------------------------------------------------- test-set uncertainty
def _scores(n_good: int, n_defect: int, seed: int, shift: float):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_good, int), np.ones(n_defect, int)]
    latent = rng.normal(0, 1, labels.size) + 1.2 * labels
    a = latent + rng.normal(0, 1, labels.size)
    b = latent + rng.normal(0, 1, labels.size) + shift * labels
    return a, b, labels


def test_auroc_rows_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from rd.stats import auroc_rows

    a, b, labels = _scores(13, 21, 1, 0.5)
    a[:4] = a[4]  # ties count half
    got = auroc_rows(np.vstack([a, b]), labels)
    assert got == pytest.approx([roc_auc_score(labels, a), roc_auc_score(labels, b)], abs=1e-12)


def test_image_bootstrap_contains_the_observed_difference_and_shrinks_with_more_images():
    from rd.stats import image_bootstrap

    small = image_bootstrap(*_scores(20, 20, 2, 0.8))
    large = image_bootstrap(*_scores(320, 320, 2, 0.8))
    for res in (small, large):
        assert res["ci_low"] < res["diff"] < res["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < 0.5 * (small["ci_high"] - small["ci_low"])
    again = image_bootstrap(*_scores(20, 20, 2, 0.8))
    assert again == small  # seeded
    a, _, labels = _scores(20, 20, 3, 0.0)
    same = image_bootstrap(a, a.copy(), labels)  # paired: the same images for both arms
    assert same["ci_low"] == same["ci_high"] == same["diff"] == 0.0


def test_stats_with_scores_adds_the_test_set_reading(tmp_path):
    from rd.cli import main

    fake = make_fake_results(tmp_path, categories=("brick", "grass"), arms=ARMS[:2], seeds=(0, 1), epochs=2,
                             failure_k=1, failure_size=8, benchmarks=False)
    summary = tmp_path / "summary.csv"
    write_summary(fake["runs"], out=summary)
    out = tmp_path / "stats.csv"
    scores = [f"{r}/scores.csv" for r in fake["runs"]]
    assert main(["stats", "--summary", str(summary), "--comparison", *ARMS[:2], "--scores", *scores,
                 "--out", str(out)]) == 0
    st = read_stats(out)
    img = st[st["reading"].str.startswith("per_category_images:")].set_index("reading")
    assert sorted(img.index) == ["per_category_images:brick", "per_category_images:grass"]
    row = img.loc["per_category_images:brick"]
    assert row["unit"] == "test images" and row["n"] == 24 and "test-set uncertainty" in row["note"]
    assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
    assert row["verdict"] in ("significant", "not significant", "no difference")
    # the AUROC of the seed-averaged scores, recomputed here
    from sklearn.metrics import roc_auc_score

    frames = [pd.read_csv(f"{r}/scores.csv") for r in fake["runs"] if "/brick/resnet18/" in r]
    mean = pd.concat(frames).groupby("path").agg(label=("label", "first"), score=("score", "mean"))
    assert row["mean_a"] == pytest.approx(roc_auc_score(mean["label"], mean["score"]), abs=1e-12)
    assert main(["stats", "--summary", str(summary), "--comparison", *ARMS[:2], "--scores",
                 str(tmp_path / "nowhere" / "scores.csv"), "--out", str(out)]) == 2
