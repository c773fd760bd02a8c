"""What the benchmark scripts share: the machine line, markdown tables, interleaved timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch


def machine_line(threads: int) -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    try:
        import anomalib
        anomalib_v = anomalib.__version__
    except ImportError:
        anomalib_v = "not installed"
    import timm
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average {load}; python {platform.python_version()}, "
            f"torch {torch.__version__} ({threads} threads), timm {timm.__version__}, anomalib {anomalib_v}; "
            f"date {date.today().isoformat()}")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(out)


class Arm:
    """A named thing to time: ``run()`` does one unit of work (a step, a cache build, a GEMM)."""

    def __init__(self, name: str, run: Callable[[], Any], units: int = 1) -> None:
        self.name, self.run, self.units = name, run, units
        self.windows: list[float] = []  # seconds per unit, one value per timed window

    @property
    def median(self) -> float:
        return statistics.median(self.windows)


def interleave(arms: list[Arm], windows: int, warmup: int, log: bool = True) -> None:
    """Warm every arm up, then time ``windows`` rounds of (arm 1 window, arm 2 window, ...)."""
    for arm in arms:
        for _ in range(warmup):
            arm.run()
    for w in range(windows):
        for arm in arms:
            t = time.perf_counter()
            for _ in range(arm.units):
                arm.run()
            arm.windows.append((time.perf_counter() - t) / arm.units)
        if log:
            print(f"  window {w + 1}/{windows}: " + ", ".join(f"{a.name} {a.windows[-1]:.3f}s" for a in arms)
                  + f"  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def spread(arm: Arm) -> str:
    return f"{min(arm.windows):.3f}–{max(arm.windows):.3f}"


def paired(ref: Arm, arm: Arm) -> float:
    """Median over windows of ref-time / arm-time measured in the same round (robust to load drift)."""
    return statistics.median(r / a for r, a in zip(ref.windows, arm.windows))
