"""Reproduction check: the RD4AD paper's published MVTec AD means beside this run's.

Shown only when the config's dataset is ``mvtec`` and the paper's arm (WideResNet-50-2
teacher, the paper's recipe: ``wide_resnet50_2/baseline``) ran; on any other dataset the
published numbers mean nothing. The paper's PRO comes from the official code's PRO, so it is
set beside ``pro_rd4ad``, not beside the MVTec ``aupro`` (the two definitions differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rd.report.formatting import METRIC_LABEL, fmt_pt, mean_sd_ci
from rd.report.inputs import dataset_of_config

PAPER_ARM = "wide_resnet50_2/baseline"
PAPER_SOURCE = "RD4AD, Deng & Li, CVPR 2022, Table 1 (image AUROC) and Table 2 (pixel AUROC, PRO)"
# (metric of this pipeline, published MVTec AD mean over the 15 categories, in %)
PAPER_MEANS = (("image_auroc", 98.5), ("pixel_auroc", 97.8), ("pro_rd4ad", 93.9))
PAPER_SETUP = "256 px, 200 epochs"
MVTEC_CATEGORIES = 15


@dataclass(frozen=True)
class PaperRow:
    """One metric: the published mean, this run's mean ± sd over seeds, and the gap in pt."""

    metric: str
    label: str
    paper: str
    ours: str
    gap: str


@dataclass(frozen=True)
class ReproductionCheck:
    arm: str
    rows: list[PaperRow]
    note: str


def reproduction_check(config: dict, summary, arms: Sequence[str]) -> ReproductionCheck | None:
    """The check for an MVTec AD run with the paper's arm; None otherwise."""
    if dataset_of_config(config)["dataset"].lower() != "mvtec" or PAPER_ARM not in arms:
        return None
    of_arm = summary[summary["arm"] == PAPER_ARM]
    rows = []
    for metric, published in PAPER_MEANS:
        label = METRIC_LABEL.get(metric, metric)
        if metric not in of_arm.columns or not of_arm[metric].notna().any():
            rows.append(PaperRow(metric, label, f"{published:.1f}",
                                 f"n/a (no {metric} in the summary: evaluate with a version that computes it)", "—"))
            continue
        stats = mean_sd_ci(of_arm.groupby("seed")[metric].mean().to_numpy())
        rows.append(PaperRow(metric, label, f"{published:.1f}", f"{fmt_pt(stats['mean'])} ± {fmt_pt(stats['sd'])}",
                             f"{fmt_pt(stats['mean'] - published / 100, signed=True)} pt"))
    n_categories = int(of_arm["category"].nunique())
    note = (f"Published means over the {MVTEC_CATEGORIES} MVTec AD categories ({PAPER_SOURCE}) beside "
            f"{PAPER_ARM}'s mean ± sd over seeds of the mean over its {n_categories} "
            f"categor{'y' if n_categories == 1 else 'ies'}. The paper's PRO is compared with "
            f"{METRIC_LABEL.get('pro_rd4ad', 'pro_rd4ad')} (pro_rd4ad: the official code's per-image PRO), not "
            f"with the MVTec {METRIC_LABEL.get('aupro', 'aupro')}. The paper trained at {PAPER_SETUP}; this "
            f"run: {config.get('image_size', '?')} px, {config.get('epochs', '?')} epochs.")
    if n_categories != MVTEC_CATEGORIES:
        note += " With fewer categories the means are not comparable to the paper's."
    return ReproductionCheck(arm=PAPER_ARM, rows=rows, note=note)
