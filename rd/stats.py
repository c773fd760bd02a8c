"""``stats``: paired comparisons between arms -> ``results/stats.csv``.

Definitions (also printed in the report and in docs/statistics.md):

* A comparison ``(arm_a, arm_b)`` is reported as ``"<arm_b> vs <arm_a>"`` and every difference
  is ``arm_b − arm_a`` (positive: arm_b scores higher). Units are those of summary.csv
  (metrics in [0, 1]; the report shows them ×100 as points).
* One **primary metric** (config ``primary_metric``, default ``image_auroc``) carries the
  verdicts; every other metric is **exploratory** (``role``): estimate, range and CI, no
  verdict word and no ``p_holm``, so adding metrics does not add chances of a "significant".
* Runs are paired when they share (category, seed); a run without its partner is dropped and the
  ``note`` says so.
* Readings. ``across_categories``: per category the mean over its paired seeds of each arm,
  then one difference per category; categories are the independent units (Demšar 2006),
  ``n`` = number of categories. ``per_category:<name>``: within one category, one difference
  per seed, ``n`` = number of seeds (seed noise on one fixed test set only).
  ``per_category_images:<name>`` (when per-image scores are given): the **test-set
  uncertainty** of one category: image AUROC of the seed-averaged image scores of each arm, and
  a paired, stratified bootstrap over the test images (``IMAGE_BOOT`` seeded resamples; good and
  defective images resampled separately, the same resampled images for both arms); ``n`` =
  number of test images, ``boot_ci_*`` and ``ci_*`` the percentile 95% CI, ``p`` the two-sided
  bootstrap p (twice the smaller tail share of resampled differences at or beyond 0).
* No test below ``MIN_UNITS`` (5) paired units: the reading is descriptive (mean difference and
  its range ``diff_min``/``diff_max``), with the note "too few units for a test (n = 2
  categories; 5 needed)". With fewer units a t-test's p rests on an sd estimated from 1–3
  degrees of freedom.
* ``t``, ``p``, ``ci_low``/``ci_high``: ``scipy.stats.ttest_rel(b, a)`` (two-sided) and its
  ``confidence_interval(0.95)`` for the mean difference.
* ``wilcoxon_p``: ``scipy.stats.wilcoxon(b - a)``, two-sided, zero differences dropped
  (``zero_method="wilcox"``). Only when at least 6 non-zero differences exist: with n pairs the
  smallest possible two-sided p is 2/2^n (0.0625 at n = 5, 0.03125 at n = 6), so below 6 it can
  never reach p < 0.05. Empty otherwise, with ``wilcoxon_note`` saying why.
* ``d_z`` = mean(d) / sd(d) (sd with ddof = 1): the paired effect size.
* ``p_holm``: Holm's step-down correction across all comparisons of the primary metric in one
  reading (one family per reading); rows whose p is undefined are not part of the family.
* ``verdict`` (primary metric only; empty for exploratory rows): ``significant`` (p_holm <
  0.05), ``not significant``, ``too few units`` (n < 5), ``no difference`` (every difference
  exactly 0) or ``no test`` (differences constant but not 0: sd 0, t undefined).
* ``mde_80`` (primary metric, t-test readings): the smallest |difference| a two-sided paired
  t-test at α = 0.05 detects with 80 % power at this n and the observed sd of the differences
  (noncentral t, ``scipy.stats.nct``); ``n_for_observed``: the smallest n at which the observed
  mean difference would be detected with 80 % power at the same sd (NaN when it is 0).
* ``boot_ci_low``/``boot_ci_high`` (t-test readings): percentile bootstrap 95% CI of the mean
  difference (10,000 resamples, seeded, identical for every row) when n ≥ 5.
* Degenerate cases never crash: n = 0 (no pairs), n = 1 (no spread) and sd(d) = 0 (all
  differences equal, e.g. both arms at AUROC 1.0) give NaN for t, p, CI and d_z, and ``note``
  explains why.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from rd.errors import RDError
from rd.metric_list import METRICS as _METRICS
from rd.params import repeated_comparisons

DEFAULT_METRICS = tuple(m.name for m in _METRICS)
DEFAULT_PRIMARY = "image_auroc"
STATS_COLUMNS = ["comparison", "arm_a", "arm_b", "metric", "role", "reading", "n", "mean_a", "mean_b",
                 "mean_diff", "diff_min", "diff_max", "ci_low", "ci_high", "t", "p", "p_holm", "verdict",
                 "mde_80", "n_for_observed", "wilcoxon_p", "wilcoxon_note", "d_z", "unit", "boot_ci_low",
                 "boot_ci_high", "note"]
TEXT_COLUMNS = {"comparison", "arm_a", "arm_b", "metric", "role", "reading", "verdict", "wilcoxon_note", "unit",
                "note"}
REQUIRED_COLUMNS = ["comparison", "arm_a", "arm_b", "metric", "reading", "n", "mean_a", "mean_b", "mean_diff",
                    "ci_low", "ci_high", "t", "p", "p_holm", "wilcoxon_p", "wilcoxon_note", "d_z"]
ACROSS = "across_categories"
PER_CATEGORY = "per_category:"
PER_CATEGORY_IMAGES = "per_category_images:"
PRIMARY, EXPLORATORY = "primary", "exploratory"
SIGNIFICANT, NOT_SIGNIFICANT, TOO_FEW, NO_DIFFERENCE, NO_TEST = \
    "significant", "not significant", "too few units", "no difference", "no test"
ALPHA = 0.05
POWER = 0.8
MIN_UNITS = 5
WILCOXON_MIN_N = 6
BOOTSTRAP_MIN_N = 5
IMAGE_BOOT = 2_000
N_SEARCH_MAX = 100_000
NAN = float("nan")
DEGENERATE_RTOL = 1e-9  # relative spread of the differences below which they count as constant
UNIT_SINGULAR = {"categories": "category", "seeds": "seed", "test images": "test image", "units": "unit"}


def comparison_name(arm_a: str, arm_b: str) -> str:
    return f"{arm_b} vs {arm_a}"


def check_primary_metric(name: str) -> str:
    """``name`` if it is one of the reported metrics, else the project's error line."""
    if name not in DEFAULT_METRICS:
        raise RDError(f"Primary metric {name!r} is not a reported metric.",
                      f"choose one of {', '.join(DEFAULT_METRICS)}.")
    return name


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


def paired_t_power(effect: float, n: int, sd: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test for a true mean difference ``effect`` with ``n``
    pairs and sd of the differences ``sd`` (noncentral t with n − 1 degrees of freedom)."""
    from scipy import stats

    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) * math.sqrt(n) / sd
    lower = float(stats.nct.cdf(-crit, df, nc))  # the wrong-sign tail: tiny, and NaN in scipy for some
    return float(stats.nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)  # (df, nc) at df = 1


def mde(n: int, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest |mean difference| the two-sided paired t-test detects with ``power`` at ``n``
    pairs and sd ``sd``; NaN when undefined (n < 2, sd not positive)."""
    from scipy import optimize

    if n < 2 or not (sd > 0) or not math.isfinite(sd):
        return NAN
    hi = sd
    while paired_t_power(hi, n, sd, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: paired_t_power(e, n, sd, alpha) - power, 0.0, hi, xtol=sd * 1e-10))


def n_needed(effect: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest number of pairs (≥ 2) at which the two-sided paired t-test detects a mean
    difference ``effect`` with ``power`` at sd ``sd``; NaN when effect is 0 or sd undefined,
    inf beyond ``N_SEARCH_MAX``."""
    if not (sd > 0) or not math.isfinite(sd) or not math.isfinite(effect) or effect == 0:
        return NAN
    if paired_t_power(effect, N_SEARCH_MAX, sd, alpha) < power:
        return math.inf
    lo, hi = 2, 2
    while paired_t_power(effect, hi, sd, alpha) < power:  # power grows with n: double, then bisect
        lo, hi = hi, min(hi * 2, N_SEARCH_MAX)
    while lo < hi:
        mid = (lo + hi) // 2
        if paired_t_power(effect, mid, sd, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return float(hi)


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


def _empty_row(n: int) -> dict:
    return {"n": n, "mean_a": NAN, "mean_b": NAN, "mean_diff": NAN, "diff_min": NAN, "diff_max": NAN,
            "ci_low": NAN, "ci_high": NAN, "t": NAN, "p": NAN, "mde_80": NAN, "n_for_observed": NAN,
            "wilcoxon_p": NAN, "wilcoxon_note": "", "d_z": NAN, "boot_ci_low": NAN, "boot_ci_high": NAN,
            "note": "", "verdict": ""}


def too_few_note(n: int, unit: str) -> str:
    """The note of a descriptive reading: "too few units for a test (n = 2 categories; 5 needed)"."""
    return f"too few units for a test (n = {n} {UNIT_SINGULAR.get(unit, unit) if n == 1 else unit}; {MIN_UNITS} needed)"


def paired_test(a: np.ndarray, b: np.ndarray, *, n_boot: int = 10_000, seed: int = 0,
                unit: str = "units", min_units: int = MIN_UNITS) -> dict:
    """All numbers of one stats.csv row for paired samples ``a`` and ``b`` (difference b − a).

    With fewer than ``min_units`` pairs only the descriptive numbers are filled (mean
    difference and range) and ``verdict`` is ``too few units``; ``mde_80`` and
    ``n_for_observed`` are filled from the observed sd whenever it is defined, because they are
    what a reader planning a larger run needs most when the run at hand is too small."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = int(a.size)
    d = b - a
    row = _empty_row(n)
    if n:
        row.update(mean_a=float(a.mean()), mean_b=float(b.mean()), mean_diff=float(d.mean()),
                   diff_min=float(d.min()), diff_max=float(d.max()))
    if n == 0:
        row["note"] = "no runs of the two arms share (category, seed): nothing to compare"
        row["wilcoxon_note"] = "no pairs"
        row["verdict"] = TOO_FEW
        return row
    degenerate = n > 1 and is_degenerate(a, b)
    sd = float(d.std(ddof=1)) if n > 1 and not degenerate else NAN
    if math.isfinite(sd):
        row["mde_80"], row["n_for_observed"] = mde(n, sd), n_needed(float(d.mean()), sd)
    if n < min_units:
        row["note"] = too_few_note(n, unit)
        row["verdict"] = TOO_FEW
        row["wilcoxon_note"] = f"n = {n} < {WILCOXON_MIN_N}: not run"
        return row
    if degenerate:
        spread = float(np.ptp(d))
        what = "all differences are exactly 0 (the arms scored identically)" if not np.any(d) else \
            (f"all {n} differences are equal ({d.mean():+.6g})" +
             (f" up to rounding (spread {spread:.2g})" if spread else "") + ", so their sd is 0")
        row["note"] = f"{what}: t, p, CI and d_z are undefined (0/0 or x/0), reported as NaN"
        row["verdict"] = NO_DIFFERENCE if not np.any(d) else NO_TEST
    else:
        res = stats.ttest_rel(b, a)
        ci = res.confidence_interval(0.95)
        row.update(t=float(res.statistic), p=float(res.pvalue), ci_low=float(ci.low), ci_high=float(ci.high),
                   d_z=float(d.mean() / sd))
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


# --------------------------------------------------------------------------- test-set uncertainty
def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (shape (r, n)) against the 0/1 ``labels`` of shape (r, n)
    or (n,): the Mann–Whitney U over ranks, ties counted half (equal to sklearn's roc_auc_score)."""
    from scipy import stats

    scores = np.atleast_2d(scores)
    labels = np.broadcast_to(labels, scores.shape).astype(bool)
    ranks = stats.rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def image_bootstrap(score_a: np.ndarray, score_b: np.ndarray, labels: np.ndarray, *, n_boot: int = IMAGE_BOOT,
                    seed: int = 0, level: float = 0.95) -> dict:
    """Paired, stratified bootstrap of AUROC(b) − AUROC(a) over the test images.

    Each resample draws, with replacement, as many good images from the good ones and as many
    defective images from the defective ones as the test set has (stratified: every resample
    keeps both classes, so AUROC stays defined), and scores the same drawn images with both
    arms (paired). ``scipy.stats.bootstrap`` has no stratified resampling, hence numpy here.
    Returns observed AUROCs, their difference, the percentile CI and the two-sided bootstrap p.
    """
    score_a, score_b = np.asarray(score_a, float), np.asarray(score_b, float)
    labels = np.asarray(labels).astype(bool)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    auc_a, auc_b = (float(auroc_rows(s, labels)[0]) for s in (score_a, score_b))
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(neg, size=(n_boot, neg.size)), rng.choice(pos, size=(n_boot, pos.size))],
                         axis=1)
    boot_labels = np.concatenate([np.zeros(neg.size, bool), np.ones(pos.size, bool)])
    diffs = auroc_rows(score_b[idx], boot_labels) - auroc_rows(score_a[idx], boot_labels)
    alpha = (1 - level) / 2
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return {"auroc_a": auc_a, "auroc_b": auc_b, "diff": auc_b - auc_a,
            "ci_low": float(np.quantile(diffs, alpha)), "ci_high": float(np.quantile(diffs, 1 - alpha)), "p": p,
            "n_good": int(neg.size), "n_defect": int(pos.size)}


def read_image_scores(summary, scores_files: Iterable[str | Path]) -> dict[tuple[str, str, int], object]:
    """``{(arm, category, seed): scores.csv frame}`` for the given scores.csv files, matched to
    summary rows by their run folder (``run_dir``; a scores file's folder is its run)."""
    import pandas as pd

    by_dir = {}
    for row in summary[["arm", "category", "seed", "run_dir"]].to_dict("records"):
        by_dir[os.path.normpath(str(row["run_dir"]))] = (str(row["arm"]), str(row["category"]), int(row["seed"]))
        by_dir[os.path.realpath(str(row["run_dir"]))] = by_dir[os.path.normpath(str(row["run_dir"]))]
    out = {}
    for path in scores_files:
        path = Path(path)
        key = by_dir.get(os.path.normpath(str(path.parent))) or by_dir.get(os.path.realpath(path.parent))
        if key is None:
            raise RDError(f"Scores file {path} belongs to no run of the summary (its folder is no run_dir there).",
                          "pass the scores.csv files of the runs that summary.csv lists.")
        try:
            frame = pd.read_csv(path, usecols=["path", "label", "score"], dtype={"path": str},
                                keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise RDError(f"Cannot read scores file {path}: {str(exc).splitlines()[0]}.",
                          "rerun `python -m rd evaluate` for that run.") from exc
        out[key] = frame
    return out


def _seed_mean_scores(frames: Sequence) -> object:
    """Per test image: its label and the mean of its score over the given seeds' frames."""
    import pandas as pd

    stacked = pd.concat(frames, ignore_index=True)
    stacked["score"] = pd.to_numeric(stacked["score"], errors="coerce")
    return stacked.groupby("path", sort=True).agg(label=("label", "first"), score=("score", "mean"))


def _image_reading(image_scores: Mapping, a: str, b: str, category: str, *, seed: int) -> dict:
    """One ``per_category_images`` row (without names) or a row whose note says what is missing."""
    seeds_a = {s for (arm, cat, s) in image_scores if arm == a and cat == category}
    seeds_b = {s for (arm, cat, s) in image_scores if arm == b and cat == category}
    seeds = sorted(seeds_a & seeds_b)
    row = _empty_row(0)
    if not seeds:
        row["note"] = "no run of both arms with scores.csv shares a seed in this category"
        row["verdict"] = TOO_FEW
        return row
    sa = _seed_mean_scores([image_scores[(a, category, s)] for s in seeds])
    sb = _seed_mean_scores([image_scores[(b, category, s)] for s in seeds])
    common = sa.index.intersection(sb.index)
    sa, sb = sa.loc[common], sb.loc[common]
    labels = sa["label"].astype(int).to_numpy()
    row["n"] = int(common.size)
    if labels.min(initial=1) == labels.max(initial=0) or sa["score"].isna().any() or sb["score"].isna().any():
        row["note"] = "test images of one class only, or scores missing: AUROC undefined"
        row["verdict"] = TOO_FEW
        return row
    boot = image_bootstrap(sa["score"].to_numpy(), sb["score"].to_numpy(), labels, seed=seed)
    row.update(mean_a=boot["auroc_a"], mean_b=boot["auroc_b"], mean_diff=boot["diff"], ci_low=boot["ci_low"],
               ci_high=boot["ci_high"], boot_ci_low=boot["ci_low"], boot_ci_high=boot["ci_high"], p=boot["p"],
               wilcoxon_note="not applicable (bootstrap reading)",
               note=(f"test-set uncertainty: paired stratified bootstrap over {boot['n_good']} good and "
                     f"{boot['n_defect']} defective test images ({IMAGE_BOOT:,} resamples), image AUROC of the "
                     f"scores averaged over seeds {', '.join(map(str, seeds))}"))
    if boot["ci_low"] == boot["ci_high"] == 0:
        row["verdict"] = NO_DIFFERENCE
    return row


# --------------------------------------------------------------------------- the table
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


def _finish_verdicts(frame) -> None:
    """Holm per reading over the primary metric's rows; verdict words from it; exploratory rows
    keep their raw p but get neither p_holm nor a verdict."""
    frame["p_holm"] = NAN
    primary = frame["role"] == PRIMARY
    for _, idx in frame[primary].groupby("reading", sort=False).groups.items():
        frame.loc[idx, "p_holm"] = holm(frame.loc[idx, "p"].to_numpy(dtype=float))
    for i in frame.index:
        if not primary[i]:
            frame.loc[i, "verdict"] = ""
            frame.loc[i, ["mde_80", "n_for_observed"]] = NAN
        elif not frame.loc[i, "verdict"]:
            p_holm = frame.loc[i, "p_holm"]
            if math.isfinite(p_holm):
                frame.loc[i, "verdict"] = SIGNIFICANT if p_holm < ALPHA else NOT_SIGNIFICANT
            else:
                frame.loc[i, "verdict"] = NO_TEST


def compute_stats(summary, comparisons: Sequence[tuple[str, str]], metrics: Iterable[str] | None = None,
                  *, n_boot: int = 10_000, seed: int = 0, primary_metric: str = DEFAULT_PRIMARY,
                  image_scores: Mapping | None = None, min_units: int = MIN_UNITS):
    """stats.csv as a DataFrame from a summary DataFrame (see the module docstring).

    ``image_scores``: ``{(arm, category, seed): scores.csv frame}`` (``read_image_scores``); with
    it, each comparison gets a ``per_category_images:<category>`` row per category."""
    import pandas as pd

    check_primary_metric(primary_metric)
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
    if primary_metric not in metrics:
        raise RDError(f"Primary metric {primary_metric!r} is not among the metrics compared "
                      f"({', '.join(metrics)}).", "compare the primary metric too, or choose another one.")

    rows = []
    for metric in metrics:
        role = PRIMARY if metric == primary_metric else EXPLORATORY
        for a, b in comparisons:
            paired, no_partner, no_value = _pairs(summary, a, b, metric)
            base = {"comparison": comparison_name(a, b), "arm_a": a, "arm_b": b, "metric": metric, "role": role}
            # across categories: mean over paired seeds per category first
            per_cat = paired.groupby("category", sort=True)[["a", "b"]].mean()
            row = dict(base, reading=ACROSS, unit="categories",
                       **paired_test(per_cat["a"].to_numpy(), per_cat["b"].to_numpy(), n_boot=n_boot, seed=seed,
                                     unit="categories", min_units=min_units))
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
                rows.append(dict(base, reading=PER_CATEGORY + cat, unit="seeds",
                                 **paired_test(sub["a"].to_numpy(), sub["b"].to_numpy(), n_boot=n_boot, seed=seed,
                                               unit="seeds", min_units=min_units)))
            if image_scores is not None and metric == "image_auroc":
                for cat in categories:
                    rows.append(dict(base, reading=PER_CATEGORY_IMAGES + cat, unit="test images",
                                     **_image_reading(image_scores, a, b, cat, seed=seed)))

    frame = pd.DataFrame(rows)
    _finish_verdicts(frame)
    return frame[STATS_COLUMNS]


def write_stats(summary_csv: str | Path, comparisons: Sequence[tuple[str, str]], out: str | Path = "results/stats.csv",
                metrics: Iterable[str] | None = None, *, n_boot: int = 10_000, seed: int = 0,
                primary_metric: str = DEFAULT_PRIMARY, scores: Sequence[str | Path] | None = None):
    """Read summary.csv (and the runs' scores.csv, when given), compute the paired tests, write
    ``out`` atomically; return the DataFrame."""
    from rd.aggregate import read_summary
    from rd.files import write_csv

    summary = read_summary(summary_csv)
    image_scores = read_image_scores(summary, scores) if scores else None
    frame = compute_stats(summary, comparisons, metrics, n_boot=n_boot, seed=seed, primary_metric=primary_metric,
                          image_scores=image_scores)
    write_csv(out, frame)
    return frame


def read_stats(path: str | Path):
    """Read stats.csv back (string columns kept as written). A stats.csv from before ``role`` and
    ``verdict`` existed gets them filled: every metric exploratory, no verdict."""
    from rd.files import read_table

    frame = read_table(path, "Statistics", "stats", REQUIRED_COLUMNS, TEXT_COLUMNS)
    for col in STATS_COLUMNS:
        if col not in frame.columns:
            frame[col] = "" if col in TEXT_COLUMNS else NAN
    if not frame.empty and (frame["role"] == "").all():
        frame["role"] = EXPLORATORY
    return frame


__all__ = ["write_stats", "compute_stats", "paired_test", "holm", "bootstrap_ci", "read_stats",
           "comparison_name", "mde", "n_needed", "paired_t_power", "image_bootstrap", "auroc_rows",
           "read_image_scores", "check_primary_metric", "STATS_COLUMNS", "DEFAULT_METRICS", "DEFAULT_PRIMARY"]
