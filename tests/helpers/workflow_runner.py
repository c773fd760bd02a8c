"""Running the real workflow from a test: a copy of the workflow files, the test's interpreter
first on PATH (rules call plain ``python -m rd``), and Snakemake as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
