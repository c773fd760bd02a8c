"""The last three steps at MVTec scale (15 categories x 4 arms x 5 seeds = 300 runs, made-up
results in the exact files the workflow writes): aggregate + stats, then the report; time
(median of the repeats) and the report's size. ``tests/test_report.py`` checks the size and
content at this scale; the time is measured here, never in a test.

    .venv/bin/python benchmarks/bench_report.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import machine_line, table  # noqa: E402
from helpers.report_fixtures import COMPARISONS, make_mvtec_scale_results  # noqa: E402  (made-up run folders)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from rd.aggregate import write_summary
    from rd.report import build_report
    from rd.stats import write_stats

    print(f"Machine: {machine_line(1)}\n")
    steps: dict[str, list[float]] = {"aggregate + stats": [], "report": []}
    size_mib = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        fake = make_mvtec_scale_results(Path(tmp) / "fake")
        for r in range(args.repeats):
            out = Path(tmp) / f"r{r}"
            out.mkdir()
            summary, stats = out / "summary.csv", out / "stats.csv"
            t0 = time.perf_counter()
            write_summary(fake["runs"], complexity=fake["complexity"], benchmarks=fake["benchmarks"], out=summary)
            write_stats(summary, COMPARISONS, out=stats)
            t1 = time.perf_counter()
            build_report(summary=summary, stats=stats, config=fake["config"], manifests=fake["manifests"],
                         out=out / "report.html", figures_dir=out / "figs")
            t2 = time.perf_counter()
            steps["aggregate + stats"].append(t1 - t0)
            steps["report"].append(t2 - t1)
            size_mib = (out / "report.html").stat().st_size / 2 ** 20
    rows = [[name, f"{statistics.median(ts):.2f}", f"{min(ts):.2f}", f"{max(ts):.2f}"] for name, ts in steps.items()]
    print(f"{len(fake['runs'])} runs (15 MVTec categories x 4 arms x 5 seeds), {args.repeats} repeats\n")
    print(table(["step", "median s", "min s", "max s"], rows))
    print(f"\nreport.html: {size_mib:.2f} MiB")


if __name__ == "__main__":
    main()
