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
        res = sps.ttest_rel(pair["b"], pair["a"])
        ci = res.confidence_interval(0.95)
        assert row["p"] == pytest.approx(res.pvalue, abs=1e-9, rel=0)
        assert row["t"] == pytest.approx(res.statistic, rel=1e-9)
        assert row["ci_low"] == pytest.approx(ci.low, abs=1e-9) and row["ci_high"] == pytest.approx(ci.high, abs=1e-9)
        d = pair["b"] - pair["a"]
        assert row["mean_diff"] == pytest.approx(d.mean(), abs=1e-12)
        assert row["d_z"] == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-9)
        if len(pair) >= 6:
            assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(d).pvalue, abs=1e-9)
        else:
            assert math.isnan(row["wilcoxon_p"]) and "< 6" in row["wilcoxon_note"]
        checked += 1
    assert checked == len(st)
    # Holm within (metric, reading), across the 3 comparisons
    for _, g in st.groupby(["metric", "reading"]):
        assert len(g) == 3
        assert g["p_holm"].to_numpy() == pytest.approx(holm(g["p"].to_numpy()), abs=1e-12)


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
    assert across["wilcoxon_note"].str.contains("2/2\\^3 = 0.25").all()
    # bootstrap only where n >= 5
    assert per["boot_ci_low"].notna().all() and across["boot_ci_low"].isna().all()
    row = st.iloc[0]
    assert row["comparison"] == f"{row['arm_b']} vs {row['arm_a']}"
    assert row["mean_diff"] == pytest.approx(row["mean_b"] - row["mean_a"])


# --------------------------------------------------------------------------- degenerate cases
def test_all_differences_zero_is_nan_with_a_note():
    r = paired_test([0.9, 0.8, 0.95], [0.9, 0.8, 0.95])
    assert r["n"] == 3 and r["mean_diff"] == 0.0
    assert all(math.isnan(r[k]) for k in ("t", "p", "ci_low", "ci_high", "d_z"))
    assert "exactly 0" in r["note"]


def test_constant_nonzero_difference_is_nan_with_a_note():
    r = paired_test([1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5])
    assert math.isnan(r["p"]) and "sd is 0" in r["note"] and r["mean_diff"] == -0.5


def test_n1_and_n0():
    r = paired_test([0.9], [0.95])
    assert r["n"] == 1 and r["mean_diff"] == pytest.approx(0.05) and math.isnan(r["p"])
    assert "n = 1" in r["note"]
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
    for cat in ("a", "b"):
        for seed in (0, 1, 2):
            rows.append({"category": cat, "arm": "x/base", "seed": seed, "image_auroc": 1.0})
            rows.append({"category": cat, "arm": "y/base", "seed": seed, "image_auroc": 1.0})
    rows.append({"category": "c", "arm": "x/base", "seed": 0, "image_auroc": 0.9})  # only one arm
    rows.append({"category": "d", "arm": "x/base", "seed": 0, "image_auroc": 0.9})
    rows.append({"category": "d", "arm": "y/base", "seed": 0, "image_auroc": 0.8})  # n = 1
    st = compute_stats(pd.DataFrame(rows), [("x/base", "y/base")], metrics=["image_auroc"])
    by = st.set_index("reading")
    per = st[st["reading"] != "across_categories"]
    assert per["p"].isna().all() and per["p_holm"].isna().all()
    # across categories: a and b differ by 0, d by -0.1 (c has no pair): a real test with n = 3
    assert by.loc["across_categories", "n"] == 3 and by.loc["across_categories", "p"] > 0
    assert by.loc["per_category:c", "n"] == 0 and "no runs" in by.loc["per_category:c", "note"]
    assert by.loc["per_category:d", "n"] == 1 and "n = 1" in by.loc["per_category:d", "note"]
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
    assert st["p"].to_numpy() == pytest.approx(one["p"].to_numpy(), abs=1e-12)
    assert st["p_holm"].to_numpy() == pytest.approx(st["p"].to_numpy(), abs=1e-12)  # family of one
    # no comparison (the CLI allows it): a header-only file that reads back
    assert main(["stats", "--summary", str(summary_path), "--out", str(out)]) == 0
    assert read_stats(out).empty and list(read_stats(out).columns) == STATS_COLUMNS
