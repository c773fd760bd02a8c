# Helpers shared by all rules - config validation (schema + cross-key checks),
# the run list (arms x categories x seeds) and per-rule parameters and resources.
# Only functions and module-level values here; rules live in their stage's file.

import difflib
import json
import os
import re
import tempfile
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA_PATH = Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml"
ARM_RE = re.compile(r"(?P<backbone>[^/\s]+)/(?P<setting>[^/\s]+)")
FIX_HINT = "keys, types and allowed values are listed in workflow/schemas/config.schema.yaml and in docs/configuration.md."


# --------------------------------------------------------------------------- validation
def _key_path(parts):
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_errors(cfg, schema):
    """One readable line per schema violation (unknown keys get a closest-name suggestion)."""
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    lines = []
    for err in sorted(validator_cls(schema).iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path))):
        where = _key_path(list(err.absolute_path))
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            for key in extra:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                prefix = f"{where}." if where != "(top level)" else ""
                lines.append(f"{prefix}{key}: unknown key.{hint} Allowed here: {', '.join(allowed)}.")
        elif err.validator == "propertyNames":
            lines.append(f"{where}: name {err.instance!r} is not allowed ({err.message}).")
        else:
            lines.append(f"{where}: {err.message}.")
    return lines


def split_arm(arm):
    """'backbone/setting' -> (backbone, setting)."""
    match = ARM_RE.fullmatch(arm)
    return match["backbone"], match["setting"]


def is_weights_file(weights):
    """A path rather than none, imagenet or a timm tag such as convnext_tiny.in12k_ft_in1k."""
    return weights not in ("none", "imagenet") and (
        bool(os.path.dirname(weights)) or weights.lower().endswith((".pth", ".pt", ".bin", ".safetensors")))


def _closest(name, choices):
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _cross_errors(cfg):
    """What JSON schema cannot say: names that must refer to each other, paths that must exist."""
    lines = []
    backbones, settings = cfg["backbones"], cfg["settings"]
    arms = cfg["arms"]
    for arm in arms:
        backbone, setting = split_arm(arm)
        if backbone not in backbones:
            lines.append(f"arms: '{arm}' names backbone '{backbone}', which is not defined under "
                         f"`backbones` (defined: {', '.join(backbones)}).{_closest(backbone, backbones)}")
        if setting not in settings:
            lines.append(f"arms: '{arm}' names setting '{setting}', which is not defined under "
                         f"`settings` (defined: {', '.join(settings)}).{_closest(setting, settings)}")
    seen = set()
    for i, (arm_a, arm_b) in enumerate(cfg["comparisons"]):
        for arm in (arm_a, arm_b):
            if arm not in arms:
                lines.append(f"comparisons[{i}]: '{arm}' is not one of the arms "
                             f"({', '.join(arms)}).{_closest(arm, arms)}")
        if arm_a == arm_b:
            lines.append(f"comparisons[{i}]: compares '{arm_a}' with itself.")
        if (arm_a, arm_b) in seen:
            lines.append(f"comparisons[{i}]: [{arm_a}, {arm_b}] is listed twice.")
        seen.add((arm_a, arm_b))
    for name, spec in backbones.items():
        weights = spec["weights"]
        if is_weights_file(weights) and name in {split_arm(a)[0] for a in arms}:
            if not Path(weights).is_file():
                lines.append(f"backbones.{name}.weights: file '{weights}' does not exist "
                             "(use none, imagenet, or the path to a local .pth/.safetensors file).")
    ds = cfg["dataset"]
    if ds["name"] != "textures":
        root = Path(ds["root"])
        if not root.is_dir():
            lines.append(f"dataset.root: folder '{root}' does not exist (dataset {ds['name']} is read, "
                         "not generated). Point it at your copy, e.g. --config 'dataset={root: /path/to/mvtec}'.")
        else:
            missing = [c for c in ds["categories"] if not (root / c).is_dir()]
            if missing:
                lines.append(f"dataset.categories: {', '.join(missing)} not found under '{root}' "
                             f"(found: {', '.join(sorted(p.name for p in root.iterdir() if p.is_dir())) or 'nothing'}).")
    return lines


def _coerce(value, schema, root):
    """Turn strings into the numbers/booleans the schema asks for.

    ``--config seeds=[0,1]`` or ``--config 'settings={tuned: {lr: 0.002}}'`` reach the workflow
    as strings inside lists and mappings; convert them where the schema expects a number.
    """
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if isinstance(value, str):
        text = value.strip()
        if "null" in kinds and text.lower() in ("null", "none", "~"):
            return None
        if "integer" in kinds and re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        if "number" in kinds and re.fullmatch(r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?", text):
            return float(text)
        if "boolean" in kinds and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        return {k: _coerce(v, props.get(k, extra), root) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items", {})
        return [_coerce(v, items if isinstance(items, dict) else {}, root) for v in value]
    return value


def check_config(cfg):
    """Validate ``cfg`` in place (defaults filled from the schema) or stop with readable lines."""
    with open(SCHEMA_PATH) as fh:
        schema = yaml.safe_load(fh)
    cfg.update(_coerce(dict(cfg), schema, schema))
    lines = _schema_errors(cfg, schema)
    if not lines:
        validate(cfg, str(SCHEMA_PATH), set_default=True)
        lines = _cross_errors(cfg)
    if lines:
        raise WorkflowError(
            "Invalid configuration (nothing was run):\n  - " + "\n  - ".join(lines) + f"\nFix: {FIX_HINT}"
        )
    return schema


SCHEMA = check_config(config)


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
    return "--projection" if config["backbones"][wildcards.backbone].get("projection") else ""


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


def write_text_atomic(path, text):
    """Temp file in the target's folder + os.replace: the file is complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
