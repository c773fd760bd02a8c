"""rd.commands: the one builder of a run's command lines, against what the workflow really runs.

For every arm of every preset (config.yaml and workflow/configs/*.yaml), the train command
printed by a ``snakemake -n -p`` dry run equals ``train_command`` of the resolved config, and
the report's Reproduce section prints that same command for a control arm.
"""

from __future__ import annotations

import copy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rd.commands import evaluate_command, run_dir, shell, train_command
from rd.config_check import check_config
from rd.report.reproduce import one_run_commands

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PRESETS = ["config.yaml"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "configs").glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's --configfile merge: mappings key by key, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _preset(name: str, root: Path) -> tuple[dict, dict]:
    """(overrides passed with --config, the resolved config) of a preset: one category, one seed,
    and for a dataset that is read (not generated) a stand-in root with its category folder."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    if name != "config.yaml":
        cfg = _merge(cfg, yaml.safe_load((REPO / name).read_text()))
    category = cfg["dataset"]["categories"][0]
    overrides = {"dataset": {"categories": [category]}, "seeds": [cfg["seeds"][0]]}
    if cfg["dataset"]["name"] != "textures":
        (root / category).mkdir(parents=True, exist_ok=True)
        overrides["dataset"]["root"] = str(root)
    resolved = _merge(cfg, overrides)
    check_config(resolved, SCHEMA)
    return overrides, resolved


def _dry_run_train_commands(wd: Path, preset: str, overrides: dict) -> dict[str, list[str]]:
    """{run folder: argv} of every train job of a dry run, parsed from its printed shell command."""
    args = [sys.executable, "-m", "snakemake", "--cores", "1", "-n", "-p", "--forceall"]
    if preset != "config.yaml":
        args += ["--configfile", preset]
    args += ["--config"] + [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in overrides.items()]
    proc = subprocess.run(args, cwd=wd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("Shell command: python -m rd train "):
            command = line.removeprefix("Shell command: ").rsplit(" > ", 1)[0]
            argv = shlex.split(command)
            # the rule also evaluates in-process and stages it for `evaluate` (rd.staging): no
            # effect on the trained model, so not part of the command that reproduces the run
            assert argv[-3:-1] == ["--stage-evaluation", "--failure-cases"], argv[-4:]
            argv = argv[:-3]
            out[argv[argv.index("--out-dir") + 1]] = argv
    return out


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    for name in ("Snakefile", "config.yaml", "environment.yml", "workflow", "rd"):
        src = REPO / name
        if src.is_dir():
            import shutil

            shutil.copytree(src, wd / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (wd / name).write_bytes(src.read_bytes())
    return wd


@pytest.mark.parametrize("preset", PRESETS)
def test_builder_equals_the_rules_command_for_every_arm(preset, workflow_copy, tmp_path):
    overrides, config = _preset(preset, tmp_path / "data")
    commands = _dry_run_train_commands(workflow_copy, preset, overrides)
    category, seed = config["dataset"]["categories"][0], config["seeds"][0]
    assert len(commands) == len(config["arms"])
    for arm in config["arms"]:
        backbone, setting = arm.split("/")
        folder = run_dir(config, backbone, setting, category, seed)
        assert commands[folder] == train_command(config, backbone, setting, category, seed, folder), arm
        argv = commands[folder]  # what the issue found missing from the hand-built command
        for flag in ("--dataset", "--name", "--student", "--backbone", "--setting"):
            assert flag in argv
        assert argv[argv.index("--name") + 1] == backbone
        assert argv[argv.index("--backbone") + 1] == config["backbones"][backbone].get("model", backbone)


def test_control_arms_reproduce_command_equals_the_rules(workflow_copy, tmp_path):
    overrides, config = _preset("config.yaml", tmp_path / "data")
    commands = _dry_run_train_commands(workflow_copy, "config.yaml", overrides)
    controls = [a for a in config["arms"] if config["backbones"][a.split("/")[0]].get("student")]
    assert controls, "config.yaml has a control arm (a student named explicitly)"
    printed = {r["arm"]: r for r in one_run_commands(config)}
    for arm in controls:
        backbone, setting = arm.split("/")
        folder = run_dir(config, backbone, setting, config["dataset"]["categories"][0], config["seeds"][0])
        assert printed[arm]["train"] == shell(commands[folder])
        assert "--name " + backbone in printed[arm]["train"] and "--model" not in printed[arm]["train"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_built_command_parses_with_the_cli(preset, tmp_path):
    """Every flag the builder emits exists in `rd train` / `rd evaluate` with a valid value."""
    from rd.cli import build_parser

    _, config = _preset(preset, tmp_path / "data")
    parser = build_parser()
    category, seed = config["dataset"]["categories"][0], config["seeds"][0]
    for arm in config["arms"]:
        backbone, setting = arm.split("/")
        folder = run_dir(config, backbone, setting, category, seed)
        args = parser.parse_args(train_command(config, backbone, setting, category, seed, folder)[3:])
        assert args.name == backbone and args.seed == seed and args.out_dir == folder
        args = parser.parse_args(evaluate_command(config, category, f"{folder}/model.pt", folder)[3:])
        assert args.dataset == config["dataset"]["name"]


def test_new_backbone_keys_become_flags():
    """student_output and projection (false | true | guide) reach the command line."""
    _, config = _preset("config.yaml", Path("unused"))
    config["backbones"]["convnext_pico_ctrl"].update(student_output="linear", projection=True)
    argv = train_command(config, "convnext_pico_ctrl", "baseline", "grass", 0, "out")
    assert argv[argv.index("--student-output") + 1] == "linear"
    assert argv[argv.index("--projection") + 1] == "orthonormal"
    config["backbones"]["convnext_pico_ctrl"]["projection"] = "guide"
    argv = train_command(config, "convnext_pico_ctrl", "baseline", "grass", 0, "out")
    assert argv[argv.index("--projection") + 1] == "guide"
    config["backbones"]["convnext_pico_ctrl"]["projection"] = False
    assert "--projection" not in train_command(config, "convnext_pico_ctrl", "baseline", "grass", 0, "out")
    config["bf16"], config["feature_cache"] = True, False
    argv = train_command(config, "resnet18", "baseline", "grass", 0, "out")
    assert "--bf16" in argv and "--no-feature-cache" in argv
