"""``stats``: paired comparisons between arms -> ``results/stats.csv``.

Definitions (also printed in the report):

* A comparison ``(arm_a, arm_b)`` is reported as ``"<arm_b> vs <arm_a>"`` and every difference
  is ``arm_b − arm_a`` (positive: arm_b scores higher). Units are those of summary.csv
  (metrics in [0, 1]; the report shows them ×100 as points).
* Runs are paired when they share (category, seed); a run without its partner is dropped and the
  ``note`` says so.
* Readings. ``across_categories``: per category the mean over its paired seeds of each arm,
  then one difference per category; categories are the independent units (Demšar 2006),
  ``n`` = number of categories. ``per_category:<name>``: within one category, one difference
  per seed, ``n`` = number of seeds.
* ``t``, ``p``, ``ci_low``/``ci_high``: ``scipy.stats.ttest_rel(b, a)`` (two-sided) and its
  ``confidence_interval(0.95)`` for the mean difference.
* ``wilcoxon_p``: ``scipy.stats.wilcoxon(b - a)``, two-sided, zero differences dropped
  (``zero_method="wilcox"``). Only when at least 6 non-zero differences exist: with n pairs the
  smallest possible two-sided p is 2/2^n (0.0625 at n = 5, 0.03125 at n = 6), so below 6 it can
  never reach p < 0.05. Empty otherwise, with ``wilcoxon_note`` saying why.
* ``d_z`` = mean(d) / sd(d) (sd with ddof = 1): the paired effect size.
* ``p_holm``: Holm's step-down correction across the comparisons that share one metric and one
  reading (the family of one table); rows whose p is undefined are not part of the family.
* ``boot_ci_low``/``boot_ci_high``: percentile bootstrap 95% CI of the mean difference
  (10,000 resamples, seeded, identical for every row) when n ≥ 5; with fewer units the
  resampling distribution has too few distinct values to mean anything.
* Degenerate cases never crash: n = 0 (no pairs), n = 1 (no spread) and sd(d) = 0 (all
  differences equal, e.g. both arms at AUROC 1.0) give NaN for t, p, CI and d_z, and ``note``
  explains why.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rd.errors import RDError
from rd.metric_list import METRICS as _METRICS
from rd.params import repeated_comparisons

DEFAULT_METRICS = tuple(m.name for m in _METRICS)
STATS_COLUMNS = ["comparison", "arm_a", "arm_b", "metric", "reading", "n", "mean_a", "mean_b", "mean_diff",
                 "ci_low", "ci_high", "t", "p", "p_holm", "wilcoxon_p", "wilcoxon_note", "d_z",
                 "unit", "boot_ci_low", "boot_ci_high", "note"]
ACROSS = "across_categories"
PER_CATEGORY = "per_category:"
WILCOXON_MIN_N = 6
BOOTSTRAP_MIN_N = 5
NAN = float("nan")
DEGENERATE_RTOL = 1e-9  # relative spread of the differences below which they count as constant


def comparison_name(arm_a: str, arm_b: str) -> str:
    return f"{arm_b} vs {arm_a}"


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and do not count in the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def bootstrap_ci(d: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``d`` (seeded: the same input gives the same CI)."""
    d = np.asarray(d, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def is_degenerate(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the paired differences do not vary beyond floating-point rounding.

    Exact equality is not enough: metrics on a discrete grid (AUROC over 20 × 40 images moves
    in steps of 1/800) give differences that are equal but for the last bits, and ``ttest_rel``
    turns that spread of ~1e-17 into t ≈ 1e15, p ≈ 1e-30. A spread below ``DEGENERATE_RTOL``
    times the size of the values is treated as no spread at all.
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), float(np.finfo(float).tiny))
    return bool(np.ptp(d) <= DEGENERATE_RTOL * scale)


def paired_test(a: np.ndarray, b: np.ndarray, *, n_boot: int = 10_000, seed: int = 0) -> dict:
    """All numbers of one stats.csv row for paired samples ``a`` and ``b`` (difference b − a)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = int(a.size)
    d = b - a
    row = {"n": n, "mean_a": float(a.mean()) if n else NAN, "mean_b": float(b.mean()) if n else NAN,
           "mean_diff": float(d.mean()) if n else NAN, "ci_low": NAN, "ci_high": NAN, "t": NAN, "p": NAN,
           "wilcoxon_p": NAN, "wilcoxon_note": "", "d_z": NAN, "boot_ci_low": NAN, "boot_ci_high": NAN,
           "note": ""}
    if n == 0:
        row["note"] = "no runs of the two arms share (category, seed): nothing to compare"
        row["wilcoxon_note"] = "no pairs"
        return row
    if n == 1:
        row["note"] = ("n = 1: a single difference has no spread, so no t-test, CI or effect size "
                       "is possible; add seeds or categories")
        row["wilcoxon_note"] = "n = 1 < 6: not run (see note)"
        return row
    if is_degenerate(a, b):
        spread = float(np.ptp(d))
        what = "all differences are exactly 0 (the arms scored identically)" if not np.any(d) else \
            (f"all {n} differences are equal ({d.mean():+.6g})" +
             (f" up to rounding (spread {spread:.2g})" if spread else "") + ", so their sd is 0")
        row["note"] = f"{what}: t, p, CI and d_z are undefined (0/0 or x/0), reported as NaN"
    else:
        res = stats.ttest_rel(b, a)
        ci = res.confidence_interval(0.95)
        row.update(t=float(res.statistic), p=float(res.pvalue), ci_low=float(ci.low), ci_high=float(ci.high),
                   d_z=float(d.mean() / d.std(ddof=1)))
        if n >= BOOTSTRAP_MIN_N:
            row["boot_ci_low"], row["boot_ci_high"] = bootstrap_ci(d, n_boot=n_boot, seed=seed)

    nonzero = int(np.count_nonzero(d))
    if n < WILCOXON_MIN_N:
        row["wilcoxon_note"] = (f"n = {n} < {WILCOXON_MIN_N}: not run; with {n} pairs the smallest two-sided "
                                f"p is 2/2^{n} = {2 / 2 ** n:.3g}, so it could never reach p < 0.05")
    elif nonzero < WILCOXON_MIN_N:
        row["wilcoxon_note"] = (f"only {nonzero} non-zero differences of {n} (zeros are dropped): not run; "
                                f"fewer than {WILCOXON_MIN_N} can never reach p < 0.05")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        row["wilcoxon_p"] = float(w.pvalue)
        row["wilcoxon_note"] = ("two-sided, scipy method 'auto'" +
                                (f"; {n - nonzero} zero difference(s) dropped" if nonzero < n else ""))
    return row


def _pairs(summary, arm_a: str, arm_b: str, metric: str):
    """(DataFrame category, seed, a, b of runs sharing (category, seed), both values present;
    runs dropped for having no partner; runs dropped for having no value, NaN, of ``metric``)."""
    sa = summary.loc[summary["arm"] == arm_a, ["category", "seed", metric]].rename(columns={metric: "a"})
    sb = summary.loc[summary["arm"] == arm_b, ["category", "seed", metric]].rename(columns={metric: "b"})
    merged = sa.merge(sb, on=["category", "seed"], how="outer", indicator=True)
    both = merged["_merge"] == "both"
    no_partner = int((~both).sum())
    no_value = int(merged.loc[both, "a"].isna().sum() + merged.loc[both, "b"].isna().sum())
    paired = merged[both].dropna(subset=["a", "b"]).drop(columns="_merge")
    return paired.sort_values(["category", "seed"], kind="stable"), no_partner, no_value


def compute_stats(summary, comparisons: Sequence[tuple[str, str]], metrics: Iterable[str] | None = None,
                  *, n_boot: int = 10_000, seed: int = 0):
    """stats.csv as a DataFrame from a summary DataFrame (see the module docstring)."""
    import pandas as pd

    comparisons = [tuple(c) for c in comparisons]
    if not comparisons:  # a config without comparisons: a header-only stats.csv, the report says so
        return pd.DataFrame(columns=STATS_COLUMNS)
    repeated = repeated_comparisons(comparisons)
    if repeated:
        i, j = repeated[0]
        raise RDError(f"Comparison [{', '.join(comparisons[i])}] tests the same pair as [{', '.join(comparisons[j])}]: "
                      "Holm's correction would count that pair twice.",
                      "list each pair of arms once (the order only sets the sign of the difference).")
    arms = sorted(set(summary["arm"]))
    for a, b in comparisons:
        if a == b:
            raise RDError(f"Comparison {a} vs {b} compares an arm with itself.", "name two different arms.")
        for arm in (a, b):
            if arm not in arms:
                raise RDError(f"Comparison names arm {arm!r}, which has no run in the summary "
                              f"(arms there: {', '.join(arms) or 'none'}).",
                              "fix the comparison in the config, or run that arm and aggregate again.")
    dup = summary.duplicated(["arm", "category", "seed"])
    if dup.any():
        r = summary.loc[dup].iloc[0]
        raise RDError(f"Summary has two rows for arm {r['arm']}, category {r['category']}, seed {r['seed']}.",
                      "rerun `python -m rd aggregate` with each run once.")
    if metrics is None:   # every known metric in the file's header; an all-NaN one is reported as NaN
        metrics = [m for m in DEFAULT_METRICS if m in summary.columns]
    metrics = list(metrics)
    for m in metrics:
        if m not in summary.columns:
            raise RDError(f"Metric {m!r} is not a column of the summary.", "choose a metric that summary.csv has.")
    if not metrics:
        raise RDError("The summary has no metric values to compare.", "check that evaluate wrote metrics.json.")

    rows = []
    for metric in metrics:
        for a, b in comparisons:
            paired, no_partner, no_value = _pairs(summary, a, b, metric)
            base = {"comparison": comparison_name(a, b), "arm_a": a, "arm_b": b, "metric": metric}
            # across categories: mean over paired seeds per category first
            per_cat = paired.groupby("category", sort=True)[["a", "b"]].mean()
            row = dict(base, reading=ACROSS, unit="categories",
                       **paired_test(per_cat["a"].to_numpy(), per_cat["b"].to_numpy(), n_boot=n_boot, seed=seed))
            extras = []
            if not summary.loc[summary["arm"].isin([a, b]), metric].notna().any():
                extras.append(f"no run of these arms has a {metric} value (all NaN in the summary)")
            elif no_value:
                extras.append(f"{no_value} run(s) without a {metric} value (NaN) dropped with their partner")
            if no_partner:
                extras.append(f"{no_partner} run(s) without a partner sharing (category, seed) dropped")
            if extras and row["n"] == 0:   # say why there are no pairs, not just that there are none
                row["note"] = "nothing to compare: " + "; ".join(extras)
            elif extras:
                row["note"] = "; ".join([row["note"], *extras] if row["note"] else extras)
            rows.append(row)
            categories = sorted(set(summary.loc[summary["arm"].isin([a, b]), "category"]))
            for cat in categories:
                sub = paired[paired["category"] == cat]
                row = dict(base, reading=PER_CATEGORY + cat, unit="seeds",
                           **paired_test(sub["a"].to_numpy(), sub["b"].to_numpy(), n_boot=n_boot, seed=seed))
                rows.append(row)

    frame = pd.DataFrame(rows)
    frame["p_holm"] = NAN
    for _, idx in frame.groupby(["metric", "reading"], sort=False).groups.items():
        frame.loc[idx, "p_holm"] = holm(frame.loc[idx, "p"].to_numpy(dtype=float))
    return frame[STATS_COLUMNS]


def write_stats(summary_csv: str | Path, comparisons: Sequence[tuple[str, str]], out: str | Path = "results/stats.csv",
                metrics: Iterable[str] | None = None, *, n_boot: int = 10_000, seed: int = 0):
    """Read summary.csv, compute the paired tests, write ``out`` atomically; return the DataFrame."""
    from rd.aggregate import read_summary
    from rd.io import write_csv

    frame = compute_stats(read_summary(summary_csv), comparisons, metrics, n_boot=n_boot, seed=seed)
    write_csv(out, frame)
    return frame


def read_stats(path: str | Path):
    """Read stats.csv back (string columns kept as written)."""
    from rd.io import read_table

    text = {"comparison", "arm_a", "arm_b", "metric", "reading", "wilcoxon_note", "unit", "note"}
    frame = read_table(path, "Statistics", "stats", list(STATS_COLUMNS[:17]), text)
    return frame


__all__ = ["write_stats", "compute_stats", "paired_test", "holm", "bootstrap_ci", "read_stats",
           "comparison_name", "STATS_COLUMNS", "DEFAULT_METRICS"]
