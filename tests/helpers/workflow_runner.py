"""Running the real workflow from a test: a copy of the workflow files, the test's interpreter
first on PATH (rules call plain ``python -m rd``), Snakemake as a subprocess, the jobs of a dry
run, a config file from config.yaml, and the config check run in-process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "environment.yml", "workflow"]


def copy_workflow(dest: Path, with_rd: bool = False) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES + (["rd"] if with_rd else []):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def snakemake(cwd: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def declared_outputs(cwd: Path, *args: str) -> list[tuple[str, str]]:
    """(output path, rule) of every job of the DAG, from ``snakemake --summary``."""
    proc = snakemake(cwd, "--summary", *args)
    rows = []
    for line in proc.stdout.splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) >= 3 and cells[0] != "output_file":
            rows.append((cells[0], cells[2]))
    assert rows, proc.stdout[-2000:] + proc.stderr[-2000:]
    return rows


def dry_run(cwd: Path, *args: str) -> list[tuple[str, dict]]:
    """Jobs a dry run would execute: (rule, wildcards) per job; the job's resources line is
    under the key "_resources"."""
    return dry_run_text(cwd, *args)[0]


def dry_run_text(cwd: Path, *args: str) -> tuple[list[tuple[str, dict]], str]:
    """``dry_run``'s jobs and the dry run's printed text (with ``-p``: the shell commands)."""
    proc = snakemake(cwd, "-n", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return [], text
    jobs: list[tuple[str, dict]] = []
    for line in text.splitlines():
        head = re.fullmatch(r"(?:local)?(?:rule|checkpoint) (\w+):", line.strip())
        if head:
            jobs.append((head.group(1), {}))
            continue
        wc = re.fullmatch(r"\s+wildcards: (.*)", line)
        if wc and jobs:
            jobs[-1][1].update(dict(kv.split("=", 1) for kv in wc.group(1).split(", ")))
        res = re.fullmatch(r"\s+resources: (.*)", line)
        if res and jobs:
            jobs[-1][1]["_resources"] = res.group(1)
    stats = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", text, re.S)
    assert stats, f"no job stats in dry run output:\n{text[-3000:]}"
    assert int(stats.group(2)) == len(jobs), text[-3000:]
    return jobs, text


def counts(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


def lr_selection_jobs(cfg: dict) -> tuple[int, int]:
    """(lr_select jobs, lr_gather jobs) a config asks for: one per grid value of each arm whose
    setting has an lr_grid, one gather per such arm."""
    grids = [cfg["settings"][arm.split("/")[1]].get("lr_grid") for arm in cfg["arms"]]
    return sum(len(g) for g in grids if g), sum(1 for g in grids if g)


def write_config(path: Path, **overrides) -> Path:
    """A full config file: config.yaml with top-level keys replaced."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def check_config_in_process(overrides: dict, cwd: Path) -> dict:
    """Run workflow/rules/common.smk (plain Python: helpers and checks only) on config.yaml with
    ``overrides`` deep-merged the way `--config` merges; returns the validated config."""
    from types import SimpleNamespace

    from snakemake.utils import update_config

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(cfg, overrides)
    class OutsideSnakemake(SimpleNamespace):  # falsy: snakemake.utils.validate reads the schema path itself
        def __bool__(self):
            return False

    workflow = OutsideSnakemake(current_basedir=str(REPO / "workflow" / "rules"))
    namespace = {"config": cfg, "workflow": workflow}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        exec(compile((REPO / "workflow/rules/common.smk").read_text(), "common.smk", "exec"), namespace)
    finally:
        os.chdir(old)
    return namespace["config"]
