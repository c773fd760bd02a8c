"""A run folder deleted by hand is retrained by the next Snakemake call, and summary.csv is
rebuilt from the runs that exist then (real Snakemake, the stand-in rd of tests/helpers/stub_rd.py)."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.stub_rd import install_stub_rd
from tests.helpers.workflow_runner import copy_workflow, counts, dry_run, snakemake, write_config

R18 = "results/runs/textures/brick/resnet18/baseline"


@pytest.fixture()
def finished(tmp_path: Path) -> Path:
    wd = copy_workflow(tmp_path / "wf")
    install_stub_rd(wd)
    write_config(wd / "base.yaml", dataset={"name": "textures", "root": "data/textures", "categories": ["brick"]},
                 seeds=[0, 1], arms=["resnet18/baseline", "convnext_pico/baseline"],
                 comparisons=[["resnet18/baseline", "convnext_pico/baseline"]])
    snakemake(wd, "--configfile", "base.yaml")
    return wd


def _summary_runs(wd: Path) -> list[str]:
    with open(wd / "results/summary.csv", newline="") as fh:
        return [row["run_dir"] for row in csv.DictReader(fh)]


def test_a_deleted_run_folder_is_retrained_and_summarised_again(finished):
    wd = finished
    shutil.rmtree(wd / R18 / "seed0")
    before = (wd / "results/summary.csv").stat().st_mtime
    jobs = dry_run(wd, "--configfile", "base.yaml")
    assert {w.get("seed") for r, w in jobs if r in ("train", "evaluate")} == {"0"}
    assert counts(jobs) == {"train": 1, "evaluate": 1, "aggregate": 1, "stats": 1, "report": 1, "all": 1}
    time.sleep(1.1)   # a visibly newer summary.csv
    snakemake(wd, "--configfile", "base.yaml")
    assert (wd / R18 / "seed0/model.pt").is_file() and (wd / R18 / "seed0/metrics.json").is_file()
    assert (wd / "results/summary.csv").stat().st_mtime > before
    assert sorted(_summary_runs(wd)) == sorted(f"results/runs/textures/brick/{arm}/seed{s}"
                                               for arm in ("resnet18/baseline", "convnext_pico/baseline")
                                               for s in (0, 1))
    assert dry_run(wd, "--configfile", "base.yaml") == []


def test_a_deleted_file_of_a_run_reruns_its_step(finished):
    (finished / R18 / "seed1/scores.csv").unlink()
    c = counts(dry_run(finished, "--configfile", "base.yaml"))
    assert c["train"] == 0 and c["evaluate"] == 1 and c["aggregate"] == 1


def test_a_run_deleted_with_its_seed_leaves_the_summary(finished):
    wd = finished
    for arm in ("resnet18/baseline", "convnext_pico/baseline"):
        shutil.rmtree(wd / f"results/runs/textures/brick/{arm}/seed1")
    cfg = yaml.safe_load((wd / "base.yaml").read_text())
    write_config(wd / "one_seed.yaml", **{**cfg, "seeds": [0]})
    snakemake(wd, "--configfile", "one_seed.yaml")
    assert sorted(_summary_runs(wd)) == [f"results/runs/textures/brick/{arm}/seed0"
                                         for arm in ("convnext_pico/baseline", "resnet18/baseline")]
