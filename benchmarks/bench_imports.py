"""Import cost of the commands' modules, side by side for source trees (RESULTS.md section 8).

    python benchmarks/bench_imports.py TREE [TREE ...]     # e.g. a `git archive` of each commit

Prints one Markdown row per import and tree: the median of 3 fresh processes of wall seconds and
of CPU seconds (user + system of the child). Run it on a quiet machine; CPU s suffers less from
other load than wall s.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

IMPORTS = ["import rd.cli", "import torch", "import rd.train", "import rd.evaluate", "import rd.train, rd.evaluate"]


def measure(tree: str, code: str, repeats: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds of ``python -c code`` with ``tree`` first on the path."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    for _ in range(repeats):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True)
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(t1 - t0)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main(trees: list[str]) -> None:
    print("| import | tree | wall s | CPU s |\n|---|---|---|---|")
    for code in IMPORTS:
        for tree in trees:
            wall, cpu = measure(os.path.abspath(tree), code)
            print(f"| `{code}` | {tree} | {wall:.2f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("error: no source tree given. Fix: python benchmarks/bench_imports.py TREE [TREE ...].")
    main(sys.argv[1:])
