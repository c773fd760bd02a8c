"""Number formatting for the report, and the one summary statistic it computes itself.

Every number in the HTML goes through these helpers so that a missing value (None, NaN, a
string in a numeric column) always shows as "—" and never raises: old result folders lack
columns that newer code writes. Negative numbers use the typographic minus sign.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable

import numpy as np

from rd.metric_list import METRICS as METRIC_INFO

MINUS = "\u2212"
MISSING = "—"

# metric name -> label as shown in tables and verdicts, in display order (from rd.metrics.METRICS)
METRICS = [(m.name, m.label) for m in METRIC_INFO]
METRIC_LABEL = dict(METRICS)
HEADLINE_METRICS = tuple(m.name for m in METRIC_INFO if m.headline)  # at a glance, open by default


def finite(x: Any) -> bool:
    """True for a number that is not NaN/inf; False for None, strings and other junk."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 2, signed: bool = False) -> str:
    if not finite(x):
        return MISSING
    text = f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"
    return text.replace("-", MINUS)


def fmt_pt(x: Any, digits: int = 1, signed: bool = False) -> str:
    """A [0, 1] metric as points (x100)."""
    return fmt_num(float(x) * 100 if finite(x) else x, digits, signed)


def fmt_p(p: Any) -> str:
    if not finite(p):
        return MISSING
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if p < 0.1:
        return f"{p:.3f}"
    return f"{p:.2f}"


def fmt_int(x: Any) -> str:
    return f"{int(round(float(x))):,}" if finite(x) else MISSING


def fmt_millions(x: Any) -> str:
    return f"{float(x) / 1e6:.2f} M" if finite(x) else MISSING


def fmt_duration(seconds: Any) -> str:
    if not finite(seconds):
        return MISSING
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def joined(values: Iterable[Any]) -> str:
    """The distinct values, sorted and comma-joined; "unknown" when there are none.

    Arms are described by the set of values their runs recorded, so that two seeds that
    disagree show both values instead of hiding one.
    """
    distinct = sorted({str(v) for v in values})
    return ", ".join(distinct) if distinct else "unknown"


@functools.lru_cache(maxsize=None)
def _t975(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def mean_sd_ci(values: Iterable[float]) -> dict:
    """Mean, sd (ddof = 1) and 95% t-interval of the finite values; NaN where undefined.

    Keys: ``n``, ``mean``, ``sd``, ``lo``, ``hi``. Non-finite inputs are dropped, not
    propagated: a run without a metric must not blank the arm's mean.
    """
    v = np.asarray([x for x in values if finite(x)], dtype=float)
    n = v.size
    out = {"n": n, "mean": float(v.mean()) if n else math.nan, "sd": float(v.std(ddof=1)) if n > 1 else math.nan,
           "lo": math.nan, "hi": math.nan}
    if n > 1:
        half = _t975(n - 1) * out["sd"] / math.sqrt(n)
        out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


def mean_sd_text(stats: dict) -> str:
    """``"12.3 ± 0.4"`` in points from a ``mean_sd_ci`` result; "—" when there is no value."""
    return f"{fmt_pt(stats['mean'])} ± {fmt_pt(stats['sd'])}" if stats["n"] else MISSING
