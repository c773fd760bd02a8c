"""Fixed per-job startup: interpreter + imports of torch, timm, rd.train, rd.evaluate
(RESULTS.md "Fixed per-job startup").

    .venv/bin/python benchmarks/bench_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import machine_line, table  # noqa: E402


def cmd_startup(args: argparse.Namespace) -> None:
    py = sys.executable
    cases = {
        "python -c pass": "pass",
        "import torch": "import torch",
        "import torch, torchvision": "import torch, torchvision",
        "import torch, torch._dynamo": "import torch, torch._dynamo",
        "import torch, timm": "import torch, timm",
        "import rd.train": "import rd.train",
        "import rd.evaluate": "import rd.evaluate",
        "import rd.train, rd.evaluate, rd.data, rd.devices": "import rd.train, rd.evaluate, rd.data, rd.devices",
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(args.repeats):
        for name, code in cases.items():
            t = time.perf_counter()
            subprocess.run([py, "-c", code], check=True, cwd=ROOT, env=env)
            times[name].append(time.perf_counter() - t)
    t = []
    for _ in range(args.repeats):
        s = time.perf_counter()
        subprocess.run([py, "-m", "rd", "--help"], check=True, cwd=ROOT, env=env, capture_output=True)
        t.append(time.perf_counter() - s)
    times["python -m rd --help"] = t
    print(f"Machine: {machine_line(1)}\n")
    print(f"### Fixed per-job startup (fresh interpreter; median of {args.repeats}, interleaved)\n")
    print(table(["command", "median s", "range"],
                [[k, statistics.median(v), f"{min(v):.2f}–{max(v):.2f}"] for k, v in times.items()]))
    proc = subprocess.run([py, "-X", "importtime", "-c", "import rd.train, rd.evaluate"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, raw = line[len("import time:"):].split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2  # two spaces per nesting level
        if depth <= 1:  # what rd imports directly, and what those import
            rows.append([("  " * depth) + raw.strip(), int(cum_us) / 1e6])
    rows = [r for r in rows if r[1] >= args.min_s]
    print("\n`python -X importtime -c 'import rd.train, rd.evaluate'` (one run; cumulative s; modules over "
          f"{args.min_s} s; an indented row is imported by the next unindented one):\n")
    print(table(["module", "cumulative s"], rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-s", type=float, default=0.1, help="importtime rows shown from this many seconds")
    cmd_startup(p.parse_args(argv))


if __name__ == "__main__":
    main()
