"""The one builder of a run's command lines, from the resolved config.

``workflow/rules/train.smk`` and ``evaluate.smk`` run these commands (through
``workflow/rules/common.smk``) and the report's Reproduce section prints them, so the command a
reader copies is the command the workflow ran: the same flags, in the same order, with the same
values. Before this module the report rebuilt the train command by hand and drifted from the
rule (no ``--dataset``, ``--name``, ``--student``; the config name passed as ``--backbone``).

Extending: a new train option is one entry in ``TRAIN_OPTIONS`` (a flag and a function from
``(config, backbone entry)`` to its value, ``None`` to leave the flag out; ``True`` for a bare
flag). The workflow and the report pick it up without further change.

No heavy imports: the Snakefile imports this module.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any, Callable, Sequence

from rd.params import LR_SELECTION_KEYS, STUDENT_DEFAULT

RUN_DIR = "results/runs/{dataset}/{category}/{backbone}/{setting}/seed{seed}"
#: The gathered lr selection of an arm whose setting has ``lr_grid`` (an input of its train jobs).
LR_SELECTION = "results/lr/{backbone}/{setting}.json"
# config `projection` (false | true | guide, or the CLI's own words) -> the value of train's --projection
PROJECTION_VALUES = {False: None, None: None, "none": None, True: "orthonormal", "orthonormal": "orthonormal",
                     "guide": "guide"}

Getter = Callable[[dict, dict], Any]


def _projection(config: dict, entry: dict) -> str | None:
    value = entry.get("projection", False)
    key = value.lower() if isinstance(value, str) else value
    if key not in PROJECTION_VALUES:
        raise ValueError(f"projection {value!r}: expected false, true or guide")
    return PROJECTION_VALUES[key]


def _optional(key: str) -> Getter:
    """A top-level config value, left out when the config lacks it (the CLI's default applies)."""
    return lambda config, entry: config.get(key)


# (flag, value getter) after the identity flags; None leaves the flag out, True is a bare flag
TRAIN_OPTIONS: list[tuple[str, Getter]] = [
    ("--student-output", lambda config, entry: entry.get("student_output")),
    ("--projection", _projection),
    ("--image-size", _optional("image_size")),
    ("--epochs", _optional("epochs")),
    ("--batch-size", _optional("batch_size")),
    ("--device", _optional("device")),
    ("--threads", _optional("threads_per_job")),
    ("--eval-every", _optional("eval_every")),
    ("--validation-fraction", lambda config, entry: config.get("dataset", {}).get("validation_fraction")),
    ("--data-seed", lambda config, entry: config.get("dataset", {}).get("seed")),
    ("--bf16", lambda config, entry: True if config.get("bf16") else None),
    ("--no-feature-cache", lambda config, entry: True if config.get("feature_cache") is False else None),
]


def _dataset(config: dict) -> tuple[str, str]:
    """(name, root) from the workflow's ``dataset: {name, root}`` (root normalised as the rules do)."""
    dataset = config["dataset"]
    return str(dataset["name"]), os.path.normpath(str(dataset["root"]))


def setting_json(config: dict, setting: str) -> str:
    """The setting as canonical JSON: a changed value changes the command, and so reruns exactly
    that setting's runs (Snakemake's params rerun trigger). Without its lr selection keys
    (``lr_grid``, ``lr_select_epochs``): those reach training through the selection's JSON."""
    values = {k: v for k, v in config["settings"][setting].items() if k not in LR_SELECTION_KEYS}
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def lr_selection(config: dict, backbone: str, setting: str) -> str | None:
    """The arm's lr selection file when its setting has an ``lr_grid``, else None."""
    if config["settings"][setting].get("lr_grid"):
        return LR_SELECTION.format(backbone=backbone, setting=setting)
    return None


def run_dir(config: dict, backbone: str, setting: str, category: str, seed: int) -> str:
    """The run folder the workflow files a run under."""
    return RUN_DIR.format(dataset=_dataset(config)[0], category=category, backbone=backbone, setting=setting,
                          seed=seed)


def _options(options: Sequence[tuple[str, Getter]], config: dict, entry: dict) -> list[str]:
    argv = []
    for flag, getter in options:
        value = getter(config, entry)
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _run_argv(command: str, config: dict, backbone: str, setting: str, category: str, seed: int) -> list[str]:
    """What defines a training run, shared by ``train`` and ``lr-select``."""
    entry = config["backbones"][backbone]
    name, root = _dataset(config)
    argv = ["python", "-m", "rd", command, "--data-root", root, "--dataset", name, "--category", str(category),
            "--backbone", str(entry.get("model") or backbone), "--name", backbone,
            "--student", str(entry.get("student", STUDENT_DEFAULT)), "--weights", str(entry["weights"]),
            "--setting-name", setting, "--setting", setting_json(config, setting), "--seed", str(seed)]
    return argv + _options(TRAIN_OPTIONS, config, entry)


def train_command(config: dict, backbone: str, setting: str, category: str, seed: int, out_dir: str) -> list[str]:
    """The exact ``python -m rd train ...`` argv of one run of the resolved ``config``."""
    argv = _run_argv("train", config, backbone, setting, category, seed)
    selection = lr_selection(config, backbone, setting)
    return argv + (["--lr-selection", selection] if selection else []) + ["--out-dir", out_dir]


def lr_select_command(config: dict, backbone: str, setting: str, lr: str, epochs: int, out: str) -> list[str]:
    """One lr selection job of an arm: its first category and seed, trained at ``lr``."""
    category, seed = config["dataset"]["categories"][0], config["seeds"][0]
    argv = _run_argv("lr-select", config, backbone, setting, category, seed)
    return argv + ["--lr", str(lr), "--select-epochs", str(epochs), "--out", out]


def evaluate_command(config: dict, category: str, model: str, out_dir: str) -> list[str]:
    """The exact ``python -m rd evaluate ...`` argv of one run's evaluation."""
    name, root = _dataset(config)
    argv = ["python", "-m", "rd", "evaluate", "--data-root", root, "--dataset", name, "--category", str(category),
            "--model", model]
    options = [("--device", _optional("device")), ("--threads", _optional("threads_per_job")),
               ("--failure-cases", _optional("failure_cases"))]
    return argv + _options(options, config, {}) + ["--out-dir", out_dir]


def shell(argv: Sequence[str]) -> str:
    """The argv as one shell-quoted line (what the rules run and the report prints)."""
    return shlex.join(argv)


__all__ = ["train_command", "evaluate_command", "lr_select_command", "lr_selection", "LR_SELECTION", "run_dir", "setting_json", "shell", "TRAIN_OPTIONS", "RUN_DIR"]
