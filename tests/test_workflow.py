"""The Snakemake workflow: config validation, the DAG per config, rerun behaviour, profiles, lint.

Fast tests dry-run the workflow (``snakemake -n``) in a copy of the repo's workflow files, or run
it with a stand-in ``rd`` package that parses the real CLI (rd/cli.py) and writes small fake
outputs, so the plumbing is checked in seconds without training anything. The end-to-end test
(marked ``slow``) runs the real library on workflow/configs/tiny.yaml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.helpers.stub_rd import TINY_PNG, install_stub_rd
from tests.helpers.workflow_runner import (check_config_in_process, copy_workflow, counts, dry_run, env,
                                          lr_selection_jobs, snakemake, write_config)

REPO = Path(__file__).resolve().parents[1]
RULES = ["prepare_data", "smoke", "complexity", "lr_select", "lr_gather", "train", "evaluate", "aggregate", "stats",
         "write_config", "report", "all"]
MVTEC_CATEGORIES = ["bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
                    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper"]


# --------------------------------------------------------------------------- dry runs
def test_default_config_dag(tmp_path):
    wd = copy_workflow(tmp_path)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    n_cat, n_seed, n_arm = len(cfg["dataset"]["categories"]), len(cfg["seeds"]), len(cfg["arms"])
    assert n_cat >= 2 and n_seed >= 3
    assert {"resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned"} <= set(cfg["arms"])
    backbones = {a.split("/")[0] for a in cfg["arms"]}
    jobs = dry_run(wd)
    n_runs = n_cat * n_seed * n_arm
    assert counts(jobs) == Counter(prepare_data=n_cat, smoke=len(backbones), complexity=len(backbones),
                                   train=n_runs, evaluate=n_runs, aggregate=1, stats=1, write_config=1,
                                   report=1, all=1)
    trained = {(w["category"], w["backbone"], w["setting"], w["seed"]) for r, w in jobs if r == "train"}
    assert len(trained) == n_runs
    # device auto: no GPU is requested
    assert all(not re.search(r"\bgpu=[1-9]", w.get("_resources", "")) for _, w in jobs)


def test_tiny_config_dag(tmp_path):
    wd = copy_workflow(tmp_path)
    jobs = dry_run(wd, "--configfile", "workflow/configs/tiny.yaml")
    assert counts(jobs) == Counter(prepare_data=1, smoke=2, complexity=2, train=4, evaluate=4,
                                   aggregate=1, stats=1, write_config=1, report=1, all=1)


def make_fake_mvtec(root: Path, categories=MVTEC_CATEGORIES) -> Path:
    for cat in categories:
        for rel in ["train/good/000.png", "train/good/001.png", "test/good/000.png",
                    "test/crack/000.png", "ground_truth/crack/000_mask.png"]:
            path = root / cat / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(TINY_PNG)
    return root


def test_mvtec_preset_dag(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    root = make_fake_mvtec(tmp_path / "mvtec")
    jobs = dry_run(wd, "--configfile", "workflow/configs/mvtec_ad.yaml", "--config", f"dataset={{root: {root}}}")
    preset = yaml.safe_load((REPO / "workflow/configs/mvtec_ad.yaml").read_text())
    assert preset["image_size"] == 256 and preset["batch_size"] == 16 and preset["epochs"] == 200
    assert preset["backbones"]["wide_resnet50_2"]["weights"] == "imagenet"
    n_runs = 15 * len(preset["seeds"]) * len(preset["arms"])
    assert n_runs == 15 * 3 * 8  # 4 arms + the control pair + the tv2 recipe arm + the guide's system
    assert preset["backbones"]["convnext_tiny_ctrl"] == {"model": "convnext_tiny", "weights": "imagenet",
                                                         "student": "wide_resnet50_2", "student_output": "linear",
                                                         "projection": True}
    assert preset["comparisons"][0] == ["wide_resnet50_2_ctrl/baseline", "convnext_tiny_ctrl/baseline"]
    lr_select, lr_gather = lr_selection_jobs(preset)
    assert lr_gather == 2  # the two tuned arms choose their lr from the grid
    assert counts(jobs) == Counter(prepare_data=15, smoke=6, complexity=6, train=n_runs, evaluate=n_runs,
                                   lr_select=lr_select, lr_gather=lr_gather,
                                   aggregate=1, stats=1, write_config=1, report=1, all=1)
    # the selection runs on the first category and seed only, one job per grid value
    assert {(w["backbone"], w["setting"], w["lr"]) for r, w in jobs if r == "lr_select"} == {
        (b, "tuned", lr) for b in ("wide_resnet50_2", "convnext_tiny") for lr in ("0.0005", "0.001", "0.002")}
    assert {w["category"] for r, w in jobs if r == "prepare_data"} == set(MVTEC_CATEGORIES)
    # on cuda every train/evaluate job requests one GPU (the SLURM executor turns it into --gpus)
    for rule, info in jobs:
        if rule in ("train", "evaluate", "lr_select"):
            assert re.search(r"\bgpu=1\b", info["_resources"]) and "runtime=" in info["_resources"], info
            assert "mem_mb=" in info["_resources"]
        elif rule != "complexity":
            assert not re.search(r"\bgpu=1\b", info.get("_resources", "")), (rule, info)
    # config projection true/guide and student_output reach every command as CLI values
    shell = snakemake(wd, "-n", "-p", "--configfile", "workflow/configs/mvtec_ad.yaml", "--config",
                      f"dataset={{root: {root}}}").stdout
    assert re.search(r"--name convnext_tiny_ctrl --student wide_resnet50_2 .*--projection orthonormal "
                     r"--student-output linear", shell)
    assert re.search(r"--name convnext_tiny_guide .*--projection guide --student-output relu", shell)
    assert re.search(r"--name wide_resnet50_2 .*--projection none --student-output relu", shell)
    # the user's root is validated, never generated into
    assert not (wd / "data").exists()


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_profiles_dry_run(tmp_path, profile):
    wd = copy_workflow(tmp_path)
    proc = snakemake(wd, "-n", "--workflow-profile", f"workflow/profiles/{profile}")
    assert f"workflow/profiles/{profile}" in proc.stdout + proc.stderr
    assert "This was a dry-run" in proc.stdout + proc.stderr
    if profile == "slurm":
        prof = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
        assert prof["executor"] == "slurm" and prof["latency-wait"] >= 30
        assert {"mem_mb", "runtime"} <= set(prof["default-resources"])


def test_lint_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out


# --------------------------------------------------------------------------- config errors
BAD_CONFIGS = [
    (["epochz=3"], "epochz: unknown key. Did you mean 'epochs'?"),
    (["epochs=three"], "epochs: 'three' is not of type 'integer'"),
    (["image_size=100"], "image_size: 100 is not a multiple of 32"),
    (["device=gpu"], "device: 'gpu' does not match"),
    (["seeds=[]"], "seeds: [] should be non-empty"),
    (["seeds=[0,0]"], "seeds: [0, 0] has non-unique elements"),
    (["arms=[resnet19/baseline]", "comparisons=[[resnet19/baseline,resnet19/baseline]]"],
     "names backbone 'resnet19', which is not defined under `backbones`"),
    (["arms=[resnet18/tunde]"], "names setting 'tunde', which is not defined under `settings`"),
    (["arms=[resnet18/baseline,convnext_pico/baseline]"], "'convnext_pico/tuned' is not one of the arms"),
    (["arms=[resnet18-baseline]"], "arms[0]: 'resnet18-baseline' does not match"),
    (["settings={baseline: {optimizer: adamm, lr: 0.1}}"], "settings.baseline.optimizer: 'adamm' is not one of"),
    (["dataset={name: mvtec, root: no/such/folder}"], "dataset.root: folder 'no/such/folder' does not exist"),
    (["backbones={resnet18: {weights: missing.pth}}"], "backbones.resnet18.weights: file 'missing.pth' does not exist"),
]


BAD_CONFIGS = [
    ({"epochz": 3}, "epochz: unknown key. Did you mean 'epochs'?"),
    ({"dataset": {"rooot": "x"}}, "dataset.rooot: unknown key. Did you mean 'root'?"),
    ({"epochs": "three"}, "epochs: 'three' is not of type 'integer'"),
    ({"image_size": 100}, "image_size: 100 is not a multiple of 32"),
    ({"device": "gpu"}, "device: 'gpu' does not match"),
    ({"seeds": []}, "seeds: [] should be non-empty"),
    ({"seeds": ["0", "0"]}, "seeds: [0, 0] has non-unique elements"),
    ({"comparisons": []}, "comparisons: [] should be non-empty"),
    ({"arms": ["resnet19/baseline"], "comparisons": [["resnet19/baseline", "resnet18/baseline"]]},
     "names backbone 'resnet19', which is not defined under `backbones`"),
    ({"arms": ["resnet18/tunde"]}, "names setting 'tunde', which is not defined under `settings`"),
    ({"arms": ["resnet18/baseline", "convnext_pico/baseline"]}, "'convnext_pico/tuned' is not one of the arms"),
    ({"comparisons": [["resnet18/baseline", "resnet18/baseline"]]}, "compares 'resnet18/baseline' with itself"),
    ({"arms": ["resnet18-baseline"]}, "arms[0]: 'resnet18-baseline' does not match"),
    ({"settings": {"baseline": {"optimizer": "adamm"}}}, "settings.baseline.optimizer: 'adamm' is not one of"),
    ({"settings": {"fast": {"optimizer": "adam"}}}, "settings.fast: 'lr' is a required property"),
    ({"backbones": {"resnet18": {"weigths": "none"}}}, "backbones.resnet18.weigths: unknown key. Did you mean 'weights'?"),
    ({"dataset": {"name": "mvtec", "root": "no/such/folder"}}, "dataset.root: folder 'no/such/folder' does not exist"),
    ({"backbones": {"resnet18": {"weights": "missing.pth"}}}, "backbones.resnet18.weights: file 'missing.pth' does not exist"),
]


@pytest.mark.parametrize("overrides,expected", BAD_CONFIGS, ids=[f"{next(iter(c[0]))}{i}" for i, c in enumerate(BAD_CONFIGS)])
def test_bad_config_is_named_with_a_fix(tmp_path, overrides, expected):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError) as info:
        check_config_in_process(overrides, tmp_path)
    message = str(info.value)
    assert message.startswith("Invalid configuration (nothing was run):"), message
    assert expected in message, message
    assert "Fix:" in message


def test_config_defaults_and_string_coercion(tmp_path):
    """Schema defaults are filled in; `--config` strings become the numbers the schema asks for."""
    cfg = check_config_in_process({"seeds": ["3", "4"], "settings": {"tuned": {"lr": "2e-3"}},
                                   "resources": {"train": {"mem_mb": "9000"}}}, tmp_path)
    assert cfg["seeds"] == [3, 4] and cfg["settings"]["tuned"]["lr"] == 0.002
    assert cfg["resources"]["train"] == {"mem_mb": 9000}
    assert cfg["backbones"]["resnet18"]["projection"] is False  # default from the schema
    cfg = check_config_in_process({"dataset": {"generate": {"n_train": "40", "size": "null"}}}, tmp_path)
    assert cfg["dataset"]["generate"] == {"n_train": 40, "size": None, "n_test_good": None, "n_per_defect": None}


def _schema_properties(schema, node=None, prefix=""):
    """(dotted key, subschema) for every property in the schema, $refs followed."""
    node = schema if node is None else node
    if "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, sub
        yield from _schema_properties(schema, sub, key)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _schema_properties(schema, extra, f"{prefix}.<name>")


def test_every_config_key_is_described():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    undocumented = [key for key, sub in _schema_properties(schema)
                    if not (sub.get("description") or "$ref" in sub)]
    assert not undocumented, undocumented
    # the default config sets only keys the schema knows, and config.yaml itself is valid
    assert set(yaml.safe_load((REPO / "config.yaml").read_text())) <= set(schema["properties"])


def test_docs_document_every_config_key():
    """docs/configuration.md (linked from the README) names every schema key in a code span."""
    assert "(docs/configuration.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    text = (REPO / "docs/configuration.md").read_text(encoding="utf-8")
    assert text.startswith("# Configuration reference")
    spans = " ".join(re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)))
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    names = {key.split(".")[-1] for key, _ in _schema_properties(schema)} - {"<name>"}
    missing = sorted(name for name in names if not re.search(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", spans))
    assert not missing, f"config keys not in docs/configuration.md: {missing}"


@pytest.mark.parametrize("overrides,expected", [
    (["epochz=3"], "epochz: unknown key. Did you mean 'epochs'?"),
    (["seeds=[0,0]"], "seeds: [0, 0] has non-unique elements"),
    (["arms=[resnet18/baseline,convnext_pico/baseline]"], "'convnext_pico/tuned' is not one of the arms"),
])
def test_bad_config_stops_snakemake_before_any_job(tmp_path, overrides, expected):
    wd = copy_workflow(tmp_path)
    proc = snakemake(wd, "--config", *overrides, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid configuration (nothing was run)" in out and expected in out, out
    assert "Traceback" not in out and "Fix:" in out
    assert not (wd / "results").exists() and not (wd / "logs").exists()


def test_mvtec_missing_category_is_named(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    root = make_fake_mvtec(tmp_path / "mvtec", categories=MVTEC_CATEGORIES[:-1])
    proc = snakemake(wd, "-n", "--configfile", "workflow/configs/mvtec_ad.yaml",
                     "--config", f"dataset={{root: {root}}}", check=False)
    assert proc.returncode != 0
    assert "dataset.categories: zipper not found under" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- plumbing with a stand-in rd
@pytest.fixture(scope="module")
def stub_run(tmp_path_factory):
    """A finished run of a small config (2 categories, 2 seeds, 3 arms incl. tuned) with the stand-in rd."""
    wd = copy_workflow(tmp_path_factory.mktemp("stubwf"))
    install_stub_rd(wd)
    write_config(wd / "base.yaml",
                 dataset={"name": "textures", "root": "data/textures", "categories": ["brick", "grass"]},
                 seeds=[0, 1],
                 arms=["resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned"],
                 comparisons=[["resnet18/baseline", "convnext_pico/baseline"],
                              ["convnext_pico/baseline", "convnext_pico/tuned"]])
    snakemake(wd, "--configfile", "base.yaml")
    return wd


def test_stub_run_writes_every_output(stub_run):
    wd = stub_run
    runs = [f"results/runs/textures/{c}/{a}/seed{s}" for c in ["brick", "grass"]
            for a in ["resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned"] for s in [0, 1]]
    expected = ["results/data/textures/brick.json", "results/data/textures/grass.json",
                "data/textures/brick", "data/textures/grass",
                "results/smoke/resnet18.json", "results/smoke/convnext_pico.json",
                "results/complexity/resnet18.json", "results/complexity/convnext_pico.json",
                "results/summary.csv", "results/stats.csv", "results/config.json",
                "reports/report.html", "reports/figures/metrics.png"]
    for run in runs:
        expected += [f"{run}/{f}" for f in ["model.pt", "history.csv", "train.json", "metrics.json",
                                            "scores.csv", "curves.json", "failure_cases.npz", "threshold.json"]]
        rid = run.removeprefix("results/runs/")
        expected += [f"results/benchmarks/train/{rid}.tsv", f"results/benchmarks/evaluate/{rid}.tsv",
                     f"logs/train/{rid}.log", f"logs/evaluate/{rid}.log"]
    missing = [p for p in expected if not (wd / p).exists()]
    assert not missing, missing
    # the train job got the setting as JSON and the config's values
    info = json.loads((wd / runs[-1] / "train.json").read_text())
    assert info["setting"] == "tuned" and info["setting_params"]["optimizer"] == "adamw"
    assert info["threads"] == 1 and info["device"] == "auto"
    # the resolved config carries the schema defaults
    mode = (wd / "results/config.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask, oct(mode)
    resolved = json.loads((wd / "results/config.json").read_text())
    assert resolved["resources"]["train"]["mem_mb"] > 0 and resolved["smoke"]["image_sizes"] == [resolved["image_size"]]
    summary = (wd / "results/summary.csv").read_text().strip().splitlines()
    assert len(summary) == 1 + len(runs)
    assert "convnext_pico/tuned" in (wd / "results/stats.csv").read_text()


def test_rerun_with_nothing_changed_does_nothing(stub_run):
    assert dry_run(stub_run, "--configfile", "base.yaml") == []


def _changed_config(wd: Path, name: str, setting: str, lr: float) -> str:
    cfg = yaml.safe_load((wd / "base.yaml").read_text())
    cfg["settings"][setting]["lr"] = lr
    (wd / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return name


@pytest.mark.parametrize("setting,arms", [("tuned", {"convnext_pico/tuned"}),
                                          ("baseline", {"resnet18/baseline", "convnext_pico/baseline"})])
def test_changing_one_setting_reruns_only_its_runs(stub_run, setting, arms):
    name = _changed_config(stub_run, f"changed_{setting}.yaml", setting, 0.0123)
    jobs = dry_run(stub_run, "--configfile", name)
    n = 2 * 2 * len(arms)  # categories x seeds x arms using that setting
    assert counts(jobs) == Counter(train=n, evaluate=n, aggregate=1, stats=1, write_config=1, report=1, all=1)
    rerun_arms = {f"{w['backbone']}/{w['setting']}" for r, w in jobs if r in ("train", "evaluate")}
    assert rerun_arms == arms


def test_changing_validation_fraction_reruns_the_data_and_every_run(stub_run):
    """The held-out list is part of the data manifest: a new fraction rewrites it and reruns every run."""
    base = yaml.safe_load((stub_run / "base.yaml").read_text())
    base["dataset"] = {**base["dataset"], "validation_fraction": 0.2}
    (stub_run / "fraction.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    c = counts(dry_run(stub_run, "--configfile", "fraction.yaml"))
    assert c["prepare_data"] == 2 and c["train"] == 12 and c["evaluate"] == 12 and c["smoke"] == 0


def test_changing_epochs_reruns_every_run_but_not_smoke(stub_run):
    write_config(stub_run / "epochs.yaml", **{**yaml.safe_load((stub_run / "base.yaml").read_text()), "epochs": 7})
    c = counts(dry_run(stub_run, "--configfile", "epochs.yaml"))
    assert c["train"] == 12 and c["evaluate"] == 12 and c["smoke"] == 0 and c["prepare_data"] == 0


def test_changing_failure_cases_reevaluates_without_retraining(stub_run):
    """Train stages its evaluation with failure_cases, but as a flag, not a param: a new value
    reruns the evaluate jobs (their param) only."""
    write_config(stub_run / "cases.yaml", **{**yaml.safe_load((stub_run / "base.yaml").read_text()),
                                             "failure_cases": 7})
    c = counts(dry_run(stub_run, "--configfile", "cases.yaml"))
    assert c["evaluate"] == 12 and c["train"] == 0 and c["smoke"] == 0


def test_snakemake_report_collects_marked_outputs(stub_run):
    snakemake(stub_run, "--configfile", "base.yaml", "--report", "sm_report.zip")
    assert (stub_run / "sm_report.zip").stat().st_size > 0


# --------------------------------------------------------------------------- environment.yml vs pyproject
def _norm(req: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*?)\s*", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env_yml = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env_yml["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env_yml["dependencies"] if isinstance(d, dict))
    assert any(re.fullmatch(r"python=3\.11(\.\*)?", d) for d in conda), conda
    assert "pip" in conda
    wanted = dict(_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    have = dict(_norm(r) for r in pip)
    assert have == wanted, {"only in environment.yml": sorted(set(have.items()) - set(wanted.items())),
                            "only in pyproject.toml": sorted(set(wanted.items()) - set(have.items()))}
    # python 3.11 satisfies requires-python
    assert re.fullmatch(r">=3\.(10|11)", project["requires-python"])


# --------------------------------------------------------------------------- end to end (real library)
@pytest.mark.slow
def test_end_to_end_tiny(tmp_path):
    import pandas as pd

    wd = copy_workflow(tmp_path, with_rd=True)
    tiny = yaml.safe_load((REPO / "workflow/configs/tiny.yaml").read_text())
    snakemake(wd, "--configfile", "workflow/configs/tiny.yaml", timeout=1500)

    cats, seeds, arms = tiny["dataset"]["categories"], tiny["seeds"], tiny["arms"]
    runs = [wd / f"results/runs/textures/{c}/{a}/seed{s}" for c in cats for a in arms for s in seeds]
    for run in runs:
        for name in ["model.pt", "history.csv", "train.json", "metrics.json", "scores.csv", "curves.json",
                     "failure_cases.npz", "threshold.json"]:
            assert (run / name).is_file(), run / name
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ["image_auroc", "pixel_auroc", "aupro", "image_ap", "pixel_ap", "image_f1max", "pixel_f1max"]:
            assert 0.0 <= metrics[key] <= 1.0, (run, key, metrics[key])
        history = pd.read_csv(run / "history.csv")
        assert len(history) == tiny["epochs"] and history["loss"].notna().all()
        info = json.loads((run / "train.json").read_text())
        assert info["epochs"] == tiny["epochs"] and info["image_size"] == tiny["image_size"]
    for backbone in {a.split("/")[0] for a in arms}:
        smoke = json.loads((wd / f"results/smoke/{backbone}.json").read_text())
        assert smoke["ok"] is True
        cx = json.loads((wd / f"results/complexity/{backbone}.json").read_text())
        assert cx["gflops"]["total"] > 0 and cx["params"]["total"] > 0
    for cat in cats:
        manifest = json.loads((wd / f"results/data/textures/{cat}.json").read_text())
        assert manifest["n_train"] > 0 and manifest["n_test_defect"] > 0

    summary = pd.read_csv(wd / "results/summary.csv")
    assert len(summary) == len(runs)
    assert set(summary["arm"]) == set(arms) and set(summary["seed"]) == set(seeds)
    assert summary["image_auroc"].between(0, 1).all() and (summary["train_seconds"] > 0).all()
    assert (summary["bench_train_s"] > 0).all()
    stats = pd.read_csv(wd / "results/stats.csv")
    assert len(stats) > 0 and set(stats["arm_a"]) | set(stats["arm_b"]) <= set(arms)
    html = (wd / "reports/report.html").read_text()
    assert len(html) > 1000 and "resnet18" in html
    assert list((wd / "reports/figures").glob("*.png")), "report() figures for snakemake --report"
    assert json.loads((wd / "results/config.json").read_text())["epochs"] == tiny["epochs"]
    # rerun with nothing changed: nothing to do
    assert dry_run(wd, "--configfile", "workflow/configs/tiny.yaml") == []
