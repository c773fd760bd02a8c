"""Tables for a paper, written beside the report: ``results.md``/``results.tex`` (arms × the
primary and headline metrics, mean ± sd over seeds, best in bold; booktabs), ``stats.md``/
``stats.tex`` (comparisons × the primary metric: difference, CI, p_holm, verdict) and, for
MVTec AD, ``per_category.md`` (image AUROC per category and arm).

The RD4AD paper's per-category numbers are not set beside ours: they were not found in the
reference material available when this was written, and no number is typed in from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rd.report.formatting import HEADLINE_METRICS, METRIC_LABEL, MINUS, mean_sd_ci, mean_sd_text

TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
PAPER_NOTE = ("The RD4AD paper's per-category numbers are not shown: they were not found in the reference "
              "material this table was built from, and none is typed in from memory.")


def tex(text: str) -> str:
    """Text safe inside a LaTeX table cell (the typographic minus becomes math minus)."""
    out = "".join(TEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace(MINUS, "$-$").replace("±", r"$\pm$").replace("—", "--").replace("→", r"$\to$")


def _md(header: Sequence[str], rows: Sequence[Sequence[str]], bold: Sequence[Sequence[bool]] | None = None) -> str:
    def cell(text: str, strong: bool) -> str:
        return f"**{text}**" if strong else text

    bold = bold or [[False] * len(r) for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(str(c).replace("|", "\\|"), b) for c, b in zip(r, bs)) + " |"
              for r, bs in zip(rows, bold)]
    return "\n".join(lines) + "\n"


def _tex(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str,
         bold: Sequence[Sequence[bool]] | None = None) -> str:
    bold = bold or [[False] * len(r) for r in rows]
    body = [" & ".join(r"\textbf{" + tex(c) + "}" if b else tex(c) for c, b in zip(r, bs)) + r" \\"
            for r, bs in zip(rows, bold)]
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\caption{" + tex(caption) + "}",
                      r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                      " & ".join(tex(h) for h in header) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", r"\end{table}"]) + "\n"


def results_table(main: dict, primary_metric: str) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Arms × (primary metric first, then the other headline metrics): mean ± sd over seeds (%)."""
    shown = [m for m, _ in main["metrics"]]
    metrics = [m for m in dict.fromkeys([primary_metric, *HEADLINE_METRICS]) if m in shown]
    header = ["arm"] + [METRIC_LABEL.get(m, m) + (" (primary)" if m == primary_metric else "") for m in metrics]
    rows, bold = [], []
    for r in main["overall"]:
        cells = {c["metric"]: c for c in r["cells"]}
        rows.append([r["arm"]] + [cells[m]["text"] for m in metrics])
        bold.append([False] + [bool(cells[m]["best"]) for m in metrics])
    return header, rows, bold


def stats_table(stats: dict) -> tuple[list[str], list[list[str]]]:
    header = ["comparison", f"{stats['primary_label']}: difference (pt)", "95% CI / range", "p_holm", "verdict"]
    rows = []
    for v, g in zip(stats["verdicts"], stats["glance"]):
        row = next(r for r in stats["table"] if r["comparison"] == g["comparison"] and r["reading"] ==
                   "across_categories")
        rows.append([g["comparison"], row["diff"], row["ci"] if row["ci"] != "—" else row.get("range", "—"),
                     row["p_holm"], row["verdict"] or "—"])
    return header, rows


def per_category_table(summary, arms: Sequence[str], metric: str = "image_auroc") -> tuple[list[str], list[list[str]]]:
    header = ["category"] + list(arms)
    rows = []
    for category in sorted(set(summary["category"])):
        rows.append([category] + [mean_sd_text(mean_sd_ci(summary.loc[(summary["arm"] == a) &
                                                                       (summary["category"] == category),
                                                                       metric].to_numpy())) for a in arms])
    return header, rows


def write_tables(folder: str | Path, main: dict, stats: dict, dataset: str, summary, arms: Sequence[str]) -> list[Path]:
    """Write the tables into ``folder``; return the paths written."""
    from rd.files import write_text

    folder = Path(folder)
    primary = stats["primary_metric"]
    header, rows, bold = results_table(main, primary)
    caption = "Mean ± sd over seeds of the mean over categories (%); best in bold."
    written = {"results.md": _md(header, rows, bold) + f"\n{caption}\n",
               "results.tex": _tex(header, rows, caption, bold)}
    header, rows = stats_table(stats)
    caption = (f"Paired comparisons across categories, {stats['primary_label']} (the primary metric); difference "
               "= second arm − first arm; Holm across the comparisons.")
    written["stats.md"] = _md(header, rows) + f"\n{caption}\n"
    written["stats.tex"] = _tex(header, rows, caption)
    if dataset == "mvtec":
        header, rows = per_category_table(summary, arms)
        written["per_category.md"] = (_md(header, rows) + "\nImage AUROC per MVTec AD category, mean ± sd over "
                                      f"seeds (%). {PAPER_NOTE}\n")
    paths = []
    for name, text in written.items():
        write_text(folder / name, text)
        paths.append(folder / name)
    return paths
