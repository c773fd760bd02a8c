"""The report's tables: results per arm and per category, statistics, cost, defect types.

Each builder turns summary.csv / stats.csv into plain dicts the template renders. Means are
computed the way the statistics are read: per arm, first the mean over categories within a
seed, then mean ± sd over seeds (the seed-to-seed spread of the arm's score).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from rd.report.audit import ALPHA, ComparisonAudit, verdict
from rd.report.formatting import (HEADLINE_METRICS, METRIC_LABEL, METRICS, finite, fmt_duration, fmt_int,
                                  fmt_millions, fmt_num, fmt_p, fmt_pt, mean_sd_ci, mean_sd_text)


def _mark_best(cells: list[dict]) -> None:
    """★ on the cells holding the highest finite mean (every metric shown is higher-is-better)."""
    top = max([c["mean"] for c in cells if finite(c["mean"])], default=math.nan)
    for c in cells:
        c["best"] = finite(c["mean"]) and c["mean"] == top


def present_metrics(summary) -> list[tuple[str, str]]:
    """(name, label) of the metrics with at least one value; a metric that old result folders
    lack is left out instead of shown as an empty column."""
    return [(m, label) for m, label in METRICS if m in summary.columns and summary[m].notna().any()]


def main_tables(summary, arms: Sequence[str]) -> dict:
    """``overall`` (one row per arm), ``per_metric`` (category x arm per metric), the metrics
    shown and the categories present."""
    metrics = present_metrics(summary)
    overall = []
    for arm in arms:
        of_arm = summary[summary["arm"] == arm]
        cells = {m: mean_sd_ci(of_arm.groupby("seed")[m].mean().to_numpy()) for m, _ in metrics}
        overall.append({"arm": arm, "n_seeds": int(of_arm["seed"].nunique()),
                        "n_categories": int(of_arm["category"].nunique()), "cells": cells})
    best = {}
    for m, _ in metrics:
        values = [r["cells"][m]["mean"] for r in overall if finite(r["cells"][m]["mean"])]
        best[m] = max(values) if values else math.nan
    for r in overall:
        r["cells"] = [{"metric": m, "text": mean_sd_text(c),
                       "ci": f"[{fmt_pt(c['lo'])}, {fmt_pt(c['hi'])}]" if finite(c["lo"]) else "",
                       "best": finite(c["mean"]) and c["mean"] == best[m]} for m, c in r["cells"].items()]

    categories = sorted(set(summary["category"]))
    per_metric = []
    for m, label in metrics:
        rows = []
        for category in categories:
            cells = []
            for arm in arms:
                values = summary.loc[(summary["arm"] == arm) & (summary["category"] == category), m]
                stats = mean_sd_ci(values.to_numpy())
                cells.append({"mean": stats["mean"], "text": mean_sd_text(stats)})
            _mark_best(cells)
            rows.append({"category": category, "cells": cells})
        per_metric.append({"metric": m, "label": label, "rows": rows})
    return {"metrics": metrics, "overall": overall, "per_metric": per_metric, "categories": categories}


STANDARD_NOTES = ("too few units for a test", "test-set uncertainty: paired stratified bootstrap")


def _standard_wilcoxon_note(r: dict) -> bool:
    """True for the routine "too few pairs" notes, which the legend already explains."""
    note = str(r.get("wilcoxon_note") or "")
    return (not note or note.startswith("n = ") or note.startswith("two-sided, scipy method 'auto'")
            and "dropped" not in note or note == "no pairs")


def _stats_row(r: dict) -> dict:
    return {"comparison": r["comparison"], "metric": METRIC_LABEL.get(r["metric"], r["metric"]),
            "reading": r["reading"], "n": fmt_int(r["n"]),
            "mean_a": fmt_pt(r["mean_a"], 2), "mean_b": fmt_pt(r["mean_b"], 2),
            "diff": fmt_pt(r["mean_diff"], 2, signed=True),
            "ci": f"[{fmt_pt(r['ci_low'], 2)}, {fmt_pt(r['ci_high'], 2)}]" if finite(r["ci_low"]) else "—",
            "boot": f"[{fmt_pt(r['boot_ci_low'], 2)}, {fmt_pt(r['boot_ci_high'], 2)}]"
            if finite(r.get("boot_ci_low")) else "—",
            "range": (f"[{fmt_pt(r['diff_min'], 2, signed=True)}, {fmt_pt(r['diff_max'], 2, signed=True)}]"
                      if finite(r.get("diff_min")) else "—"),
            "verdict": r.get("verdict") or "", "mde": fmt_pt(r.get("mde_80"), 2),
            "n_obs": fmt_int(r.get("n_for_observed")) if finite(r.get("n_for_observed")) else "—",
            "t": fmt_num(r["t"]), "p": fmt_p(r["p"]), "p_holm": fmt_p(r["p_holm"]),
            "sig": finite(r["p_holm"]) and float(r["p_holm"]) < ALPHA,
            "wilcoxon": fmt_p(r["wilcoxon_p"]) if finite(r["wilcoxon_p"]) else "—",
            "wilcoxon_note": r.get("wilcoxon_note") or "",
            "d_z": fmt_num(r["d_z"]),
            # the standard "n < 6" Wilcoxon explanation is in the legend and the cell's tooltip
            # the standard notes (too few units, the test-set bootstrap) are the verdict and the legend
            "note": "; ".join(x for x in ("" if str(r.get("note") or "").startswith(STANDARD_NOTES) else
                                           r.get("note") or "",
                                           "" if _standard_wilcoxon_note(r) else
                                           f"Wilcoxon: {r.get('wilcoxon_note')}") if x)}


def _short(r: dict) -> str:
    """ "+1.2 pt [−0.3, 2.7]" or "+1.2 pt (range −0.3 to +2.7)": an estimate without a verdict word."""
    diff = fmt_pt(r["mean_diff"], 2, signed=True)
    if finite(r.get("ci_low")):
        return f"{diff} [{fmt_pt(r['ci_low'], 2)}, {fmt_pt(r['ci_high'], 2)}]"
    if finite(r.get("diff_min")) and finite(r["n"]) and float(r["n"]) > 1:
        return f"{diff} (range {fmt_pt(r['diff_min'], 2, signed=True)} to {fmt_pt(r['diff_max'], 2, signed=True)})"
    return diff


def stats_section(stats, comparisons: Sequence[tuple[str, str]], audits: Mapping[str, ComparisonAudit],
                  tags: Mapping[str, list[str]] | None = None, blocked: Mapping[str, list[str]] | None = None,
                  primary_metric: str = "image_auroc") -> dict:
    """The primary metric's verdicts (glance and Statistics), the exploratory metrics' estimates
    (one table, no verdict words), the per-category readings of the primary metric (seeds and
    test-set uncertainty, with each comparison's caveat tags) and its full statistics table.

    ``tags``: caveat kinds per comparison name; ``blocked``: the kinds (AT CHANCE, NOT
    CONVERGED) that void a comparison's headline at a glance."""
    tags, blocked = dict(tags or {}), dict(blocked or {})
    records = stats.to_dict("records")
    roles = {r["metric"]: r.get("role") for r in records}
    if primary_metric not in roles and "primary" in roles.values():
        primary_metric = next(m for m, role in roles.items() if role == "primary")
    across = [r for r in records if r["reading"] == "across_categories"]
    primary = [r for r in across if r["metric"] == primary_metric]
    verdicts = [verdict(r, audits.get(r["comparison"]), tags.get(r["comparison"])) for r in primary]
    glance = []
    for r, v in zip(primary, verdicts):
        stop = blocked.get(r["comparison"], [])
        glance.append({"comparison": r["comparison"], "verdict": v, "blocked": stop})
    exploratory_metrics = [(m, label) for m, label in METRICS  # a metric no run recorded has no column
                           if m != primary_metric and any(r["metric"] == m and finite(r["mean_diff"]) for r in across)]
    exploratory = []
    for name in dict.fromkeys(r["comparison"] for r in across):
        cells = {r["metric"]: _short(r) for r in across if r["comparison"] == name}
        exploratory.append({"comparison": name, "cells": [cells.get(m, "—") for m, _ in exploratory_metrics]})
    per_category: dict[str, list[dict]] = {}
    for r in records:
        if r["metric"] != primary_metric or r["reading"] == "across_categories":
            continue
        kind, _, category = r["reading"].partition(":")
        rows = per_category.setdefault(r["comparison"], [])
        row = next((x for x in rows if x["category"] == category), None)
        if row is None:
            row = {"category": category, "seeds": "—", "images": "—", "tags": tags.get(r["comparison"], [])}
            rows.append(row)
        word = r.get("verdict") or ""
        p_text = f", p_holm {fmt_p(r['p_holm'])}" if finite(r.get("p_holm")) else ""
        cell = f"{_short(r)}, n = {fmt_int(r['n'])}{p_text}" + (f" — {word}" if word else "")
        row["seeds" if kind == "per_category" else "images"] = cell

    wins = []  # per category: how often arm_b beats arm_a in the primary metric (seed means)
    for a, b in comparisons:
        name = f"{b} vs {a}"
        rows = [r for r in records if r["comparison"] == name and r["metric"] == primary_metric
                and str(r["reading"]).startswith("per_category:") and finite(r["mean_diff"])]
        wins.append({"comparison": name, "higher": sum(float(r["mean_diff"]) > 0 for r in rows),
                     "lower": sum(float(r["mean_diff"]) < 0 for r in rows), "n": len(rows)})
    return {"primary_metric": primary_metric, "primary_label": METRIC_LABEL.get(primary_metric, primary_metric),
            "verdicts": verdicts, "glance": glance,
            "exploratory_metrics": [label for _, label in exploratory_metrics], "exploratory": exploratory,
            "per_category": per_category,
            "table": [_stats_row(r) for r in records if r["metric"] == primary_metric], "wins": wins}


def cost_table(summary, arms: Sequence[str]) -> tuple[list[dict], list[tuple[str, float, float, float]]]:
    """Cost rows per arm, and (arm, GFLOPs, image AUROC mean, sd over seeds) for the scatter."""
    rows, points = [], []
    for arm in arms:
        of_arm = summary[summary["arm"] == arm]
        first = of_arm.iloc[0]

        def mean_sd(col, fmt=fmt_duration):
            if col not in of_arm.columns or not of_arm[col].notna().any():
                return "—"
            s = mean_sd_ci(of_arm[col].to_numpy())
            return f"{fmt(s['mean'])} ± {fmt(s['sd'])}" if s["n"] > 1 else fmt(s["mean"])

        def first_value(col):  # cost columns are the same in every run of an arm
            return first[col] if col in of_arm.columns else math.nan

        rows.append({"arm": arm, "p_teacher": fmt_millions(first_value("params_teacher")),
                     "p_student": fmt_millions(first_value("params_student")),
                     "p_total": fmt_millions(first_value("params_total")),
                     "g_teacher": fmt_num(first_value("gflops_teacher"), 3),
                     "g_student": fmt_num(first_value("gflops_student"), 3),
                     "g_total": fmt_num(first_value("gflops_total"), 3),
                     "latency": fmt_num(first_value("latency_ms_batch1"), 1),
                     "throughput": fmt_num(first_value("throughput_img_s"), 1),
                     "train": mean_sd("train_seconds"), "eval": mean_sd("eval_seconds"),
                     "mem": mean_sd("peak_mem_mb", lambda x: fmt_num(x, 0)),
                     "bench_train": mean_sd("bench_train_s"),
                     "bench_rss": mean_sd("bench_train_max_rss_mb", lambda x: fmt_num(x, 0))})
        if "image_auroc" in of_arm.columns:
            s = mean_sd_ci(of_arm.groupby("seed")["image_auroc"].mean().to_numpy())
            points.append((arm, first_value("gflops_total"), s["mean"], s["sd"]))
    return rows, points


def defect_tables(summary, arms: Sequence[str]) -> list[dict]:
    """Per category: image AUROC per defect type and arm, and the hardest type (None when the
    category has a single type, as in datasets that label every defect "anomaly")."""
    cols = [c for c in summary.columns if c.startswith("defect_auroc:")]
    out = []
    for category in sorted(set(summary["category"])):
        of_category = summary[summary["category"] == category]
        rows = []
        for col in cols:
            if not of_category[col].notna().any():
                continue
            cells = []
            for arm in arms:
                stats = mean_sd_ci(of_category.loc[of_category["arm"] == arm, col].to_numpy())
                cells.append({"mean": stats["mean"], "text": mean_sd_text(stats)})
            _mark_best(cells)
            rows.append({"type": col.split(":", 1)[1], "cells": cells})
        if len(rows) > 1:
            hardest = min(rows, key=lambda r: min([c["mean"] for c in r["cells"] if finite(c["mean"])], default=1.0))
            out.append({"category": category, "rows": rows, "hardest": hardest["type"]})
        elif rows:  # one type (e.g. a dataset whose defects are all typed "anomaly"): nothing to rank
            out.append({"category": category, "rows": rows, "hardest": None})
    return out
