"""The CPU floor of a finished run's train jobs: what one-process-per-run costs at least.

Reruns, one at a time and with nothing else started by this script, one train job per arm of a
finished workflow (its resolved ``results/config.json`` and its data), with exactly the command
line the workflow ran (``rd.commands.train_command`` + the rule's staged-evaluation flags), into
a scratch folder. Each job's CPU (user + system of the child, from ``getrusage``) times the
arm's number of runs gives the CPU the train jobs need; divided by the cores, the shortest wall
time the train jobs alone allow. Import-only probes split off the start-up part (interpreter +
``import`` of what a train job loads), which no change inside a run can remove.

Usage (after ``benchmarks/bench_e2e.sh`` or any finished ``snakemake`` run):
    python benchmarks/bench_floor.py --run-dir /tmp/rd-e2e.X/rd [--cores 2] [--repeats 1]
Run it on a quiet machine; it prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

IMPORT_PROBES = {
    "python + torch": "import torch",
    "+ timm (torchvision, torch._dynamo)": "import torch, timm",
    "what a train job imports (rd.train, rd.evaluate, rd.metrics)": "import rd.train, rd.evaluate, rd.metrics",
}


def child_cpu(argv: list[str], cwd: Path, env: dict) -> float:
    """User + system CPU seconds of one child process (and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"error: {' '.join(argv[:4])} ... failed (rc {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path, help="a finished workflow folder (has results/config.json)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=1, help="jobs per arm (median)")
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    config_path = run_dir / "results" / "config.json"
    if not config_path.is_file():
        sys.exit(f"error: {config_path} not found. Fix: pass the folder of a finished `snakemake` run.")
    from rd.commands import train_command

    config = json.loads(config_path.read_text())
    env = dict(os.environ, PYTHONPATH=str(run_dir))
    category, seed = config["dataset"]["categories"][0], config["seeds"][0]
    runs_per_arm = len(config["dataset"]["categories"]) * len(config["seeds"])

    print(f"## CPU floor of the train jobs ({run_dir}, {args.cores} cores, median of {args.repeats})\n")
    print("| start-up probe | CPU s |\n|---|---|")
    startup = {}
    for label, code in IMPORT_PROBES.items():
        startup[label] = statistics.median(child_cpu([sys.executable, "-c", code], run_dir, env)
                                           for _ in range(max(args.repeats, 3)))
        print(f"| {label} | {startup[label]:.2f} |")
    print("\n| arm | CPU s per run | runs | CPU s of its train jobs |\n|---|---|---|---|")
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="rd-floor-") as scratch:
        for arm in config["arms"]:
            backbone, setting = arm.split("/")
            cpus = []
            for i in range(args.repeats):
                out = Path(scratch) / backbone / setting / str(i)
                argv = [*train_command(config, backbone, setting, category, seed, str(out)),
                        "--stage-evaluation", "--failure-cases", str(config["failure_cases"])]
                if argv[0] == "python":  # the workflow's `python` is the environment's: this one
                    argv[0] = sys.executable
                cpus.append(child_cpu(argv, run_dir, env))
            per_run = statistics.median(cpus)
            total += per_run * runs_per_arm
            print(f"| {arm} | {per_run:.1f} | {runs_per_arm} | {per_run * runs_per_arm:.0f} |")
    n_runs = runs_per_arm * len(config["arms"])
    floor_startup = list(startup.values())[-1] * n_runs
    print(f"\nTrain jobs: {n_runs} runs, {total:.0f} CPU s, of which start-up (imports) {floor_startup:.0f} CPU s. "
          f"On {args.cores} cores they need at least **{total / args.cores:.0f} s** of wall time, before any "
          f"other job and Snakemake itself.")


if __name__ == "__main__":
    main()
