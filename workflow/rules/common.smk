# Helpers shared by all rules - config validation (schema + cross-key checks),
# the run list (arms x categories x seeds) and per-rule parameters and resources.
# Only functions and module-level values here; rules live in their stage's file.

import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

SCHEMA_PATH = Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml"


# --------------------------------------------------------------------------- validation
# The checks live in rd/config_check.py (importable, unit-tested); the rules run `rd` anyway.
try:
    import rd.config_check as _config_check
except ImportError:   # snakemake run from the repository without `rd` installed
    sys.path.insert(0, str((Path(workflow.current_basedir) / ".." / "..").resolve()))
    import rd.config_check as _config_check

import rd.commands as _commands

split_arm = _config_check.split_arm
is_weights_file = _config_check.is_weights_file
from rd.params import GENERATED_DONE, STUDENT_DEFAULT, default_lr_select_epochs  # GENERATED_DONE: prepare_data's output

try:
    SCHEMA = _config_check.check_config(config, SCHEMA_PATH)
except _config_check.InvalidConfig as exc:
    raise WorkflowError(str(exc)) from None


# --------------------------------------------------------------------------- the run list
DATASET = config["dataset"]["name"]
ROOT = os.path.normpath(config["dataset"]["root"])
CATEGORIES = list(config["dataset"]["categories"])
SEEDS = list(config["seeds"])
ARMS = [split_arm(arm) for arm in config["arms"]]
BACKBONES = list(dict.fromkeys(backbone for backbone, _ in ARMS))
GENERATED = DATASET == "textures"
THREADS = int(config["threads_per_job"])

VALIDATION_FRACTION = float(config["dataset"]["validation_fraction"])

RUN = _commands.RUN_DIR  # results/runs/{dataset}/{category}/{backbone}/{setting}/seed{seed}
RUN_ID = "{dataset}/{category}/{backbone}/{setting}/seed{seed}"
MANIFEST = "results/data/{dataset}/{category}.json"


def runs():
    """Every (category, backbone, setting, seed) of the config, as wildcard dicts."""
    return [
        dict(dataset=DATASET, category=category, backbone=backbone, setting=setting, seed=seed)
        for category in CATEGORIES
        for backbone, setting in ARMS
        for seed in SEEDS
    ]


def run_files(name):
    return [f"{RUN}/{name}".format(**r) for r in runs()]


def run_dirs():
    return [RUN.format(**r) for r in runs()]


def benchmark_files(step):
    return [f"results/benchmarks/{step}/{RUN_ID}.tsv".format(**r) for r in runs()]


# The generator's last-written file per category: a target of `all`, so a data folder deleted by
# hand is regenerated (train and evaluate depend on the manifest only).
DATA_MARKERS = [f"{ROOT}/{category}/{GENERATED_DONE}" for category in CATEGORIES] if GENERATED else []


def manifests():
    return [MANIFEST.format(dataset=DATASET, category=c) for c in CATEGORIES]


# --------------------------------------------------------------------------- per-rule values
def resource(rule_name, key):
    """mem_mb / runtime of a rule: the config's value, else the schema's default."""
    default = SCHEMA["properties"]["resources"]["properties"][rule_name]["default"]
    return int(config["resources"].get(rule_name, {}).get(key, default[key]))


def uses_gpu(device):
    return str(device).startswith("cuda")


GPU_PER_RUN = 1 if uses_gpu(config["device"]) else 0
GPU_COMPLEXITY = 1 if uses_gpu(config["complexity"]["device"]) else 0


# --------------------------------------------------------------------------- lr selection
LR_SELECTION = _commands.LR_SELECTION  # results/lr/{backbone}/{setting}.json
LR_RUN = "results/lr/{backbone}/{setting}/lr{lr}"


def lr_grid(setting):
    """The setting's lr_grid as wildcard values ('0.0005', ...), or [] when its lr is fixed."""
    return [format(float(v), "g") for v in config["settings"][setting].get("lr_grid") or []]


def lr_select_epochs(wildcards):
    """Epochs of each selection run: the setting's lr_select_epochs, else a quarter of `epochs`."""
    setting = config["settings"][wildcards.setting]
    return int(setting.get("lr_select_epochs") or default_lr_select_epochs(config["epochs"]))


def lr_selection_input(wildcards):
    """The arm's gathered lr selection, when its setting has an lr_grid (else no input)."""
    return [LR_SELECTION.format(backbone=wildcards.backbone, setting=wildcards.setting)] if lr_grid(wildcards.setting) else []


def lr_runs(wildcards):
    """The per-lr selection JSONs the gather step reads (one per grid value)."""
    return [f"{LR_RUN}.json".format(backbone=wildcards.backbone, setting=wildcards.setting, lr=lr)
            for lr in lr_grid(wildcards.setting)]


def backbone_weights(wildcards):
    return config["backbones"][wildcards.backbone]["weights"]


def weights_input(wildcards):
    """A local weights file is an input (its change reruns the backbone's jobs); none/imagenet/tags are not."""
    weights = backbone_weights(wildcards)
    return [weights] if is_weights_file(weights) else []


def backbone_model(wildcards):
    """The timm model behind a backbone name (the name itself unless `model` is set)."""
    return config["backbones"][wildcards.backbone].get("model") or wildcards.backbone


def student_flag(wildcards):
    return config["backbones"][wildcards.backbone].get("student", STUDENT_DEFAULT)


def projection_flag(wildcards):
    """Config false/true/guide -> --projection none/orthonormal/guide."""
    value = config["backbones"][wildcards.backbone].get("projection", False)
    name = {False: "none", True: "orthonormal"}.get(value, str(value))
    return f"--projection {name}"


def student_output_flag(wildcards):
    output = config["backbones"][wildcards.backbone].get("student_output", "relu")
    return f"--student-output {output}"


def smoke_sizes():
    return " ".join(str(s) for s in (config["smoke"]["image_sizes"] or [config["image_size"]]))


def generate_flags():
    """Embedded-dataset size options as prepare-data flags (only those set; textures only)."""
    if not GENERATED:
        return ""
    gen = config["dataset"]["generate"]
    return " ".join(f"--{key.replace('_', '-')} {int(gen[key])}" for key in sorted(gen) if gen[key] is not None)


def _run_dir(wildcards):
    return _commands.run_dir(config, wildcards.backbone, wildcards.setting, wildcards.category, int(wildcards.seed))


def train_shell(wildcards):
    """The run's train command line, from the one builder the report's Reproduce section uses
    (rd.commands): a changed value in it (setting, budget, flags) reruns exactly that run.
    (A function of the wildcards only: Snakemake's params rerun trigger compares it.)"""
    folder = _run_dir(wildcards)
    return _commands.shell(_commands.train_command(
        config, wildcards.backbone, wildcards.setting, wildcards.category, int(wildcards.seed), folder))


def lr_select_shell(wildcards):
    """One lr selection job's command (a function of the wildcards only, so that Snakemake's
    params rerun trigger compares it)."""
    out = f"{LR_RUN}.json".format(backbone=wildcards.backbone, setting=wildcards.setting, lr=wildcards.lr)
    return _commands.shell(_commands.lr_select_command(
        config, wildcards.backbone, wildcards.setting, wildcards.lr, lr_select_epochs(wildcards), out))


def evaluate_shell(wildcards):
    folder = _run_dir(wildcards)
    return _commands.shell(_commands.evaluate_command(config, wildcards.category, f"{folder}/model.pt", folder))


def resolved_config_json():
    """The validated config with defaults, as written to results/config.json for the report."""
    resolved = dict(config)
    resolved["smoke"] = dict(config["smoke"], image_sizes=[int(s) for s in smoke_sizes().split()])
    resolved["resources"] = {
        name: {key: resource(name, key) for key in ("mem_mb", "runtime")}
        for name in SCHEMA["properties"]["resources"]["properties"]
    }
    return json.dumps(resolved, indent=2, sort_keys=True) + "\n"
