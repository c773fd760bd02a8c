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

split_arm = _config_check.split_arm
is_weights_file = _config_check.is_weights_file
from rd.io import write_text  # atomic: temp file, fsync, rename

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

RUN = "results/runs/{dataset}/{category}/{backbone}/{setting}/seed{seed}"
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


def setting_json(wildcards):
    """The setting as canonical JSON: a changed value changes this param and reruns its runs only."""
    return json.dumps(config["settings"][wildcards.setting], sort_keys=True, separators=(",", ":"))


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
    return config["backbones"][wildcards.backbone].get("student", "auto")


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


def train_flags():
    """Boolean train options as CLI flags (a params value, so a change reruns training)."""
    flags = []
    if config["bf16"]:
        flags.append("--bf16")
    if not config["feature_cache"]:
        flags.append("--no-feature-cache")
    return " ".join(flags)


def resolved_config_json():
    """The validated config with defaults, as written to results/config.json for the report."""
    resolved = dict(config)
    resolved["smoke"] = dict(config["smoke"], image_sizes=[int(s) for s in smoke_sizes().split()])
    resolved["resources"] = {
        name: {key: resource(name, key) for key in ("mem_mb", "runtime")}
        for name in SCHEMA["properties"]["resources"]["properties"]
    }
    return json.dumps(resolved, indent=2, sort_keys=True) + "\n"
