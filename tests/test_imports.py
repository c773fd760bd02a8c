"""Import budget per command: each `python -m rd <command>` imports only the heavy packages it
uses (a process start that imports torch, timm, sklearn, ... costs seconds, and the workflow
starts one per job). Checked by module set from `python -X importtime`, not by timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "timm", "torchvision", "sklearn", "scipy", "pandas", "matplotlib", "fvcore", "numpy", "PIL"}
COMMANDS = ["prepare-data", "smoke", "complexity", "train", "evaluate", "aggregate", "stats", "report",
            "predict", "export"]


def imported(args: list[str], cwd: Path | None = None) -> set[str]:
    """Top-level packages a `python -X importtime -m rd ...` process imported (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", proc.stderr, re.M)
    assert names, proc.stderr[-2000:]
    return {n.split(".")[0] for n in names}


def heavy(args: list[str], cwd: Path | None = None) -> set[str]:
    return imported(args, cwd) & HEAVY


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_nothing_heavy(command):
    assert heavy([command, "--help"]) == set()


def test_evaluate_publishing_a_staged_evaluation_imports_nothing_heavy(tmp_path):
    from rd import staging

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"not read by torch on this path")
    staging.stage_dir(run).mkdir()
    (staging.stage_dir(run) / "metrics.json").write_text("{}\n")
    options = staging.evaluation_options(data_root=tmp_path, category="brick", dataset="textures",
                                         failure_cases=4, device="cpu")
    staging.write_record(run, files=["metrics.json"], options=options, model_path=run / "model.pt")
    assert heavy(["evaluate", "--data-root", str(tmp_path), "--dataset", "textures", "--category", "brick",
                  "--model", str(run / "model.pt"), "--device", "cpu", "--out-dir", str(run)]) == set()
    assert (run / "metrics.json").is_file()


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory) -> Path:
    from tests.helpers.report_fixtures import make_fake_results

    root = tmp_path_factory.mktemp("fake")
    make_fake_results(root)
    return root


def test_aggregate_stats_report_stay_off_torch(fake_results):
    root = fake_results
    runs = sorted(str(p.parent) for p in (root / "results" / "runs").rglob("metrics.json"))
    bench = sorted(str(p) for p in (root / "results" / "benchmarks").rglob("*.tsv"))
    cx = sorted(str(p) for p in (root / "results" / "complexity").glob("*.json"))
    got = heavy(["aggregate", "--runs", *runs, "--complexity", *cx, "--benchmarks", *bench,
                 "--out", "summary.csv"], cwd=root)
    assert got <= {"pandas", "numpy"}, got
    got = heavy(["stats", "--summary", "summary.csv", "--comparison", "resnet18/baseline", "convnext_pico/baseline",
                 "--out", "stats.csv"], cwd=root)
    assert got <= {"pandas", "numpy", "scipy"}, got
    got = heavy(["report", "--summary", "summary.csv", "--stats", "stats.csv", "--config", "config.json",
                 "--out", "report.html"], cwd=root)
    assert not got & {"torch", "timm", "torchvision", "sklearn", "fvcore"}, got


def test_prepare_data_stays_off_torch(tmp_path):
    got = heavy(["prepare-data", "--dataset", "textures", "--root", str(tmp_path), "--category", "brick",
                 "--n-train", "4", "--n-test-good", "2", "--n-per-defect", "1", "--size", "64",
                 "--out", str(tmp_path / "m.json")])
    assert not got & {"torch", "timm", "sklearn", "pandas", "matplotlib", "fvcore"}, got


def test_train_and_evaluate_import_no_plotting_or_flop_counting(brick_root, tmp_path):
    run = tmp_path / "run"
    common = ["--data-root", str(brick_root), "--dataset", "textures", "--category", "brick", "--device", "cpu"]
    got = heavy(["train", *common, "--backbone", "resnet18", "--image-size", "64", "--epochs", "1",
                 "--batch-size", "16", "--stage-evaluation", "--out-dir", str(run)])
    assert {"torch", "timm"} <= got and not got & {"matplotlib", "fvcore"}, got
    # a full evaluation (other failure_cases than staged): the metrics' sklearn, still no plotting
    got = heavy(["evaluate", *common, "--model", str(run / "model.pt"), "--failure-cases", "1",
                 "--out-dir", str(run)])
    assert {"torch", "sklearn"} <= got and not got & {"matplotlib", "fvcore"}, got
    got = heavy(["smoke", "--backbone", "resnet18", "--image-sizes", "64", "--out", str(tmp_path / "s.json")])
    assert not got & {"sklearn", "pandas", "matplotlib", "fvcore", "scipy"}, got
