"""The workflow's config check: the JSON schema, the shared parameter rules and the cross-key
rules, with every problem reported at once as one readable line each.

``workflow/rules/common.smk`` calls :func:`check_config` before any job is scheduled, so a
config that every job would fail on stops the run with "Invalid configuration (nothing was
run)". It lives here (not in the .smk file) so that it is importable and unit-tested
(tests/test_params.py).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from rd.metric_list import METRICS
from rd import params
from rd.params import RULES, TEXTURE_CATEGORIES, is_weights_file, repeated_comparisons, setting_errors

ARM_RE = re.compile(r"(?P<backbone>[^/\s]+)/(?P<setting>[^/\s]+)")
FIX_HINT = ("keys, types and allowed values are listed in workflow/schemas/config.schema.yaml and "
            "docs/configuration.md; messages and fixes in docs/errors.md.")
#: top-level config key -> its rule in rd.params
TOP_LEVEL_RULES = {"image_size": "image_size", "epochs": "epochs", "batch_size": "batch_size",
                   "threads_per_job": "threads", "eval_every": "eval_every", "failure_cases": "failure_cases",
                   "device": "device"}
GENERATE_RULES = {"n_train": "n_train", "n_test_good": "n_test_good", "n_per_defect": "n_per_defect",
                  "size": "crop_size"}


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
    metric_names = [m.name for m in METRICS]
    if cfg.get("primary_metric", "image_auroc") not in metric_names:
        lines.append(f"primary_metric: '{cfg['primary_metric']}' is not a reported metric (one of "
                     f"{', '.join(metric_names)}).{_closest(str(cfg['primary_metric']), metric_names)}")
    for i, (arm_a, arm_b) in enumerate(cfg["comparisons"]):
        for arm in (arm_a, arm_b):
            if arm not in arms:
                lines.append(f"comparisons[{i}]: '{arm}' is not one of the arms "
                             f"({', '.join(arms)}).{_closest(arm, arms)}")
        if arm_a == arm_b:
            lines.append(f"comparisons[{i}]: compares '{arm_a}' with itself.")
    comparisons = cfg["comparisons"]
    for i, j in repeated_comparisons(comparisons):
        first = "" if list(comparisons[j]) == list(comparisons[i]) else f" [{', '.join(comparisons[j])}]"
        lines.append(f"comparisons[{i}]: [{', '.join(comparisons[i])}] compares the same pair as comparisons[{j}]"
                     f"{first}; list each pair once (the order only sets the sign of the difference).")
    for name, spec in backbones.items():
        weights = spec["weights"]
        if is_weights_file(weights) and name in {split_arm(a)[0] for a in arms}:
            if not Path(weights).is_file():
                lines.append(f"backbones.{name}.weights: file '{weights}' does not exist "
                             "(use none, imagenet, or the path to a local .pth/.safetensors file).")
    lines += _student_errors(backbones)
    ds = cfg["dataset"]
    lines += _dataset_errors(ds)
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
    return lines + _predict_errors(cfg)


#: Folders the workflow writes into; a dataset root inside (or around) one of them could be overwritten.
PIPELINE_FOLDERS = ("results", "reports", "logs", ".snakemake")


def _dataset_errors(ds) -> list[str]:
    """Meaning, not shape: a category is one folder name (the schema's pattern), the embedded
    generator makes only its own categories, and the dataset root is apart from the outputs."""
    lines = []
    if ds["name"] == "textures":
        unknown = [c for c in ds["categories"] if c not in TEXTURE_CATEGORIES]
        if unknown:
            lines.append(f"dataset.categories: {', '.join(map(repr, unknown))} not an embedded texture category "
                         f"({', '.join(TEXTURE_CATEGORIES)}); dataset.name is 'textures' (the default), which "
                         "generates data. For your own folder set dataset.name (mvtec, visa, mvtec_ad2 or btad).")
    root = Path(os.path.abspath(ds["root"]))
    for folder in PIPELINE_FOLDERS:
        out = Path(os.path.abspath(folder))
        if root == out or out in root.parents or root in out.parents:
            lines.append(f"dataset.root: '{ds['root']}' overlaps the workflow's output folder '{folder}/'; "
                         "point the dataset root at a folder of its own (e.g. data/<name>).")
    return lines


def _predict_rule_errors(cfg: dict) -> list[str]:
    """What the schema lets through in the optional `predict` block: a seed outside the seed
    rule, and a NaN/inf threshold (it would fail the predict job after all the training)."""
    spec = cfg.get("predict")
    if not isinstance(spec, dict):
        return []
    lines = []
    if "seed" in spec:
        problem = RULES["seed"].violation(spec["seed"])
        if problem:
            lines.append(f"predict.seed: {problem}.")
    threshold = spec.get("threshold")
    if isinstance(threshold, float) and not math.isfinite(threshold):
        lines.append(f"predict.threshold: must be good, f1max or a finite number, got {threshold!r}.")
    return lines


def _student_errors(backbones: dict) -> list[str]:
    """Projection and student must fit together (widths are checked by `smoke`, which builds it)."""
    lines = []
    for name, spec in backbones.items():
        student, projection = spec.get("student", params.STUDENT_DEFAULT), spec.get("projection", False)
        if projection is True and student in params.STUDENT_FAMILIES:
            lines.append(f"backbones.{name}: projection true embeds the teacher into the widths of a named "
                         f"student, but student is '{student}'. Set student to a timm ResNet, e.g. "
                         "student: wide_resnet50_2.")
        if projection == "guide" and student not in params.GUIDE_STUDENTS:
            lines.append(f"backbones.{name}: projection guide uses resnet18's student, not '{student}'. "
                         "Drop student or set it to resnet18.")
    return lines


def _predict_errors(cfg) -> list[str]:
    """The optional `predict` block must name a run of this config and images that exist."""
    spec = cfg.get("predict")
    if not spec:
        return []
    lines = []
    arms, categories, seeds = cfg["arms"], cfg["dataset"]["categories"], cfg["seeds"]
    if spec.get("arm") not in arms:
        lines.append(f"predict.arm: '{spec.get('arm')}' is not one of the arms ({', '.join(arms)})."
                     f"{_closest(str(spec.get('arm')), arms)}")
    if spec.get("category") not in categories:
        lines.append(f"predict.category: '{spec.get('category')}' is not one of dataset.categories "
                     f"({', '.join(categories)}).{_closest(str(spec.get('category')), categories)}")
    seed = spec.get("seed", 0)
    if seed not in seeds:
        lines.append(f"predict.seed: {seed} is not one of the seeds ({', '.join(map(str, seeds))}).")
    images = spec.get("images") or []
    missing = [p for p in ([images] if isinstance(images, str) else images) if not os.path.exists(p)]
    if missing:
        lines.append(f"predict.images: {', '.join(missing)} does not exist.")
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
        if "number" in kinds and re.fullmatch(r"[+-]?[.]?(nan|inf|infinity)", text.lower()):
            return float(text.lower().replace(".", ""))   # YAML's .nan/.inf: the rules then say why not
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


def rule_errors(cfg: dict) -> list[str]:
    """What the shared parameter rules (rd.params) refuse and JSON schema lets through: NaN and
    inf (schema bounds compare False with NaN), batch_size 1, warmup_epochs > epochs,
    min_lr > lr. The CLI applies the same rules to the same values."""
    lines = []

    def check(where: str, rule: str, value: Any) -> None:
        problem = RULES[rule].violation(value)
        if problem:
            lines.append(f"{where}: {problem}.")

    for key, rule in TOP_LEVEL_RULES.items():
        if key in cfg:
            check(key, rule, cfg[key])
    for i, size in enumerate(cfg.get("smoke", {}).get("image_sizes") or []):
        check(f"smoke.image_sizes[{i}]", "image_size", size)
    complexity = cfg.get("complexity", {})
    if "batch_size" in complexity:
        check("complexity.batch_size", "throughput_batch_size", complexity["batch_size"])
    if "device" in complexity:
        check("complexity.device", "complexity_device", complexity["device"])
    dataset = cfg.get("dataset", {})
    if "seed" in dataset:
        check("dataset.seed", "seed", dataset["seed"])
    if "validation_fraction" in dataset:
        check("dataset.validation_fraction", "validation_fraction", dataset["validation_fraction"])
    for key, value in (dataset.get("generate") or {}).items():
        if value is not None and key in GENERATE_RULES:
            check(f"dataset.generate.{key}", GENERATE_RULES[key], value)
    for i, seed in enumerate(cfg.get("seeds") or []):
        check(f"seeds[{i}]", "seed", seed)
    epochs = cfg.get("epochs")
    fraction = dataset.get("validation_fraction")
    for name, setting in (cfg.get("settings") or {}).items():
        lines += [f"settings.{name}.{line}." for line in
                  setting_errors(setting, epochs, required=True, lr_selection=True)]
        if isinstance(setting, dict) and "lr_grid" in setting and fraction == 0:
            lines.append(f"settings.{name}.lr_grid: the lr is chosen on held-out good images, but "
                         "dataset.validation_fraction is 0 (none are held out). Set dataset.validation_fraction "
                         "> 0 (e.g. 0.1), or remove lr_grid and give the lr.")
    return lines + _predict_rule_errors(cfg)


class InvalidConfig(Exception):
    """The config cannot run; ``lines`` holds one readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("Invalid configuration (nothing was run):\n  - " + "\n  - ".join(lines)
                         + f"\nFix: {FIX_HINT}")


def load_schema(path: str | Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def check_config(cfg: dict, schema_path: str | Path) -> dict:
    """Validate ``cfg`` in place (strings coerced, defaults filled from the schema) or raise
    :class:`InvalidConfig` with every problem at once; returns the schema.

    The schema and the parameter rules are checked together (a rule's line is left out where
    the schema already names that key, so nothing is said twice); the cross-key checks need
    the schema's defaults and run once both passed. Nothing runs before all checks passed.
    """
    from snakemake.utils import validate

    schema = load_schema(schema_path)
    cfg.update(_coerce(dict(cfg), schema, schema))
    lines = _schema_errors(cfg, schema)
    named = [line.split(":", 1)[0] for line in lines]
    lines += [line for line in rule_errors(cfg)
              if not any(line.split(":", 1)[0] == k or line.startswith(k + ".") or line.startswith(k + "[")
                         for k in named)]
    if not lines:
        validate(cfg, str(schema_path), set_default=True)
        lines = _cross_errors(cfg)
    if lines:
        raise InvalidConfig(lines)
    return schema
