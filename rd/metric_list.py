"""The one list of reported metrics (computed in ``rd.metrics``).

summary.csv columns (``rd.aggregate``), the metrics compared (``rd.stats``) and the report's
tables all derive from it, so adding a metric here adds it everywhere. A metric that old
metrics.json files lack reads as NaN and is left out of the report's tables (shown as "—"
where only some runs have it). Kept apart from ``rd.metrics`` so that reading it imports no
scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple


class MetricInfo(NamedTuple):
    """A reported metric: its key in metrics.json / summary.csv, its label in tables, its
    direction (every metric here is higher-is-better, which the report's ★ relies on), whether
    it is a headline metric (shown at a glance), and how ``rd.evaluate`` computes it: the
    ``rd.metrics`` function, on image scores and labels (``image``) or on maps and masks
    (``pixel``); ``f1_max`` and ``iou_at_f1max`` use the F1max threshold evaluate finds once."""

    name: str
    label: str
    higher_is_better: bool
    headline: bool
    function: str
    level: str


METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("image_auroc", "image AUROC", True, True, "image_auroc", "image"),
    MetricInfo("pixel_auroc", "pixel AUROC", True, True, "pixel_auroc", "pixel"),
    MetricInfo("aupro", "AUPRO (MVTec, FPR≤0.3)", True, True, "aupro", "pixel"),
    MetricInfo("pro_rd4ad", "PRO (RD4AD code)", True, False, "pro_rd4ad", "pixel"),
    MetricInfo("image_ap", "image AP", True, False, "average_precision", "image"),
    MetricInfo("pixel_ap", "pixel AP", True, False, "pixel_average_precision", "pixel"),
    MetricInfo("image_f1max", "image F1max", True, False, "f1_max", "image"),
    MetricInfo("pixel_f1max", "pixel F1max", True, False, "f1_max", "pixel"),
    MetricInfo("iou", "IoU", True, False, "iou_at_f1max", "pixel"),
)
