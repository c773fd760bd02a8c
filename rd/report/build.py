"""The self-contained HTML report: ``build_report(summary=, stats=, config=, manifests=, out=)``.

One HTML file, figures embedded as base64 PNG, no script, no network request; long parts fold
into ``<details>``. Text goes through jinja2 with autoescape on, so names from user data (a
category called ``<b>x</b>``) show as text. A missing per-run file is said in the report,
never a crash.

This module only wires the parts together; each lives in its own module:
``inputs`` (what is read), ``facts`` and ``audit`` (fairness audit and verdicts), ``tables``, ``curves``
(data) and ``figures`` (drawing), ``failures``, ``what_ran``, ``paper_check``, ``reproduce``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rd.errors import RDError
from rd.report.audit import ALPHA, arm_facts, audit_matrix, fairness_audit
from rd.report.caveats import arm_caveats, caveat_groups, comparison_tags, headline_blocked
from rd.report.curves import collect_curves
from rd.report.failures import failure_section
from rd.report.figures import arm_colors, cost_scatter, curve_figures, data_uri
from rd.report.inputs import dataset_of_config, git_commit, load_config, load_manifests, load_run
from rd.report.paper_check import reproduction_check
from rd.report.reproduce import reproduce
from rd.report.paper_tables import write_tables
from rd.report.tables import cost_table, defect_tables, main_tables, stats_section
from rd.report.what_ran import header

TEMPLATES = Path(__file__).with_name("templates")
MAIN_FIGURES = ("cost_vs_auroc", "loss", "eval_metrics", "curves")


def _ordered_arms(summary, config: dict) -> list[str]:
    """Arms in the config's order, then any others found in the summary, sorted."""
    present = list(dict.fromkeys(summary["arm"]))
    ordered = [a for a in (config.get("arms") or []) if a in present]
    return ordered + sorted(a for a in present if a not in ordered)


def load_smoke(path: str | Path) -> dict:
    """A smoke JSON as a mapping; {} when it is unreadable (the caveats then claim nothing)."""
    import json

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def tables_links(out: Path, tables_dir: Path, dataset: str) -> list[tuple[str, str]]:
    """(label, path relative to the report) of the paper tables."""
    import os

    rel = os.path.relpath(tables_dir, out.parent)
    names = ["results.md", "results.tex", "stats.md", "stats.tex"] + (["per_category.md"] if dataset == "mvtec" else [])
    return [(name, f"{rel}/{name}".replace(os.sep, "/")) for name in names]


def _hex_color(rgba) -> str:
    return "#%02x%02x%02x" % tuple(int(255 * c) for c in rgba[:3])


def build_report(summary: str | Path, stats: str | Path, config: str | Path, manifests: Sequence[str | Path] = (),
                 out: str | Path = "reports/report.html", figures_dir: str | Path | None = None,
                 *, failure_k: int = 4, smoke: Sequence[str | Path] = (),
                 tables_dir: str | Path | None = None) -> Path:
    """Build the HTML report; also write the main figures as PNG into ``figures_dir`` when given
    (``cost_vs_auroc.png``, ``loss.png``, ``eval_metrics.png``, ``curves.png``, always all four)
    and the paper tables into ``tables_dir`` (default: ``tables`` beside the report).
    ``smoke``: the backbones' smoke JSON files (negative teacher features, loss floor)."""
    import jinja2

    from rd.aggregate import read_summary
    from rd.files import write_bytes, write_text
    from rd.stats import read_stats

    summary_path, stats_path, config_path, out = Path(summary), Path(stats), Path(config), Path(out)
    summary_frame = read_summary(summary_path)
    if summary_frame.empty:
        raise RDError(f"Summary {summary_path} has no runs.", "run train/evaluate and `python -m rd aggregate` first.")
    stats_frame = read_stats(stats_path)
    config_dict = load_config(config_path)
    manifests_by_category = load_manifests(manifests)
    dataset = dataset_of_config(config_dict)

    arms = _ordered_arms(summary_frame, config_dict)
    colors = arm_colors(arms)
    comparisons = list(dict.fromkeys(zip(stats_frame["arm_a"], stats_frame["arm_b"]))) or \
        [tuple(c) for c in (config_dict.get("comparisons") or [])]
    comparisons = [(a, b) for a, b in comparisons if a in arms and b in arms]
    runs = [load_run(row, summary_path) for row in summary_frame.to_dict("records")]

    facts = {arm: arm_facts(arm, runs, config_dict) for arm in arms}
    audits = fairness_audit(comparisons, facts, manifests_by_category)
    primary_metric = str(config_dict.get("primary_metric") or "image_auroc")
    smoke_records = {Path(p).stem: load_smoke(p) for p in smoke}
    by_arm = arm_caveats(arms, summary_frame, runs, facts, smoke_records, primary_metric)
    tags = {a.name: comparison_tags(a, by_arm) for a in audits}
    blocked = {a.name: headline_blocked(a, by_arm) for a in audits}
    stats = stats_section(stats_frame, comparisons, {a.name: a for a in audits}, tags, blocked, primary_metric)
    tables_dir = Path(tables_dir) if tables_dir is not None else out.parent / "tables"
    main = main_tables(summary_frame, arms)
    cost_rows, cost_points = cost_table(summary_frame, arms)
    figs, fig_notes = curve_figures(collect_curves(runs, arms), arms, main["categories"], colors)
    figs["cost_vs_auroc"] = cost_scatter(cost_points, colors)
    git = git_commit()

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(
        what_ran=header(summary_frame, config_dict, config_path, runs, arms, main["categories"], git,
                        manifests_by_category),
        paper=reproduction_check(config_dict, summary_frame, arms),
        loud=caveat_groups(audits, by_arm, facts), fairness=audit_matrix(audits), audits=audits, main=main,
        stats=stats, tables=tables_links(out, tables_dir, dataset["dataset"]),
        cost={"rows": cost_rows}, figs={k: data_uri(v) for k, v in figs.items()},
        defects=defect_tables(summary_frame, arms), failures=failure_section(runs, arms, failure_k),
        fig_notes=fig_notes, failure_k=failure_k, arms=arms, comparisons=comparisons,
        manifests=manifests_by_category,
        missing_cats=[c for c in dataset["categories"] if c not in main["categories"]],
        problems=[(str(r.row.get("run_dir")), p) for r in runs for p in r.problems],
        repro=reproduce(config_dict, config_path, summary_path, stats_path, list(manifests), out, comparisons,
                        git["commit"], figures_dir),
        colors={a: _hex_color(colors[a]) for a in arms},
        alpha=ALPHA,
    )
    write_tables(tables_dir, main, stats, dataset["dataset"], summary_frame, arms)
    write_text(out, html)
    if figures_dir is not None:
        for name in MAIN_FIGURES:
            write_bytes(Path(figures_dir) / f"{name}.png", figs[name])
    return out
