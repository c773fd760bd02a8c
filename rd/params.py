"""One table of parameter rules: type, range, multiple-of, choices, default.

The command line (argparse ``type=`` functions from :func:`arg`), the training settings
(:func:`check_setting`, used by ``rd.optim``) and the workflow's config check
(``rd.config_check``) all ask this table, so a value is refused the same way wherever it comes
from, and before any work starts. A new flag plugs in by adding a :class:`Rule` here and
declaring it with ``p.add_argument("--my-flag", **params.arg("my_flag"))``.

``RECIPE`` is the paper's training recipe (256 px, 200 epochs, batch 16; Deng & Li 2022) and
the single source of the ``python -m rd train`` defaults and of ``rd.run.TrainConfig``. The
workflow's defaults (``workflow/schemas/config.schema.yaml``) are those of its small default
run instead, sized for a laptop; they are documented as such there.

No heavy imports: the CLI's ``--help`` and the Snakefile import this module.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rd.errors import RDError

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def is_weights_file(weights: str) -> bool:
    """``weights`` names a file (a path or a weights suffix), not none, imagenet or a timm tag
    such as ``convnext_tiny.in12k_ft_in1k``. Shared by the config check and the weights loader."""
    return weights not in ("none", "imagenet") and (
        weights.lower().endswith(WEIGHT_FILE_SUFFIXES) or "/" in weights or "\\" in weights)

#: A category name is one path component: letters, digits, ``_ . -``, not starting with a dot
#: (so never ``.``, ``..`` or a hidden folder). The schema's category pattern is kept equal to it.
CATEGORY_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"

#: The embedded dataset's categories (``rd.data.textures`` generates exactly these).
TEXTURE_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel")
#: The file the texture generator writes last into a category folder it made: the prepare_data
#: rule's declared output (Snakemake deletes a failed job's outputs: only this file, never a folder).
GENERATED_DONE = "generated.done"

#: The dataset layouts a data root can be in (``dataset.name``, ``--dataset``; readers in rd.data).
DATASETS: tuple[str, ...] = ("textures", "mvtec", "visa", "mvtec_ad2", "btad")

#: The student a backbone gets when it names none: the paper's ResNet student for a ResNet
#: teacher, the ConvNeXt student otherwise (rd.method.model.derive_student).
STUDENT_DEFAULT = "auto"
#: Student values naming a family rather than a timm ResNet whose structure to copy.
STUDENT_FAMILIES: tuple[str, ...] = (STUDENT_DEFAULT, "resnet", "convnext")
#: The students ``projection: guide`` allows: it always uses resnet18's student.
GUIDE_STUDENTS: tuple[str, ...] = (STUDENT_DEFAULT, "resnet", "resnet18")
#: The ResNet student's stage outputs: relu (the official student, the default) or linear (no final ReLU).
STUDENT_OUTPUT_DEFAULT = "relu"
STUDENT_OUTPUTS: tuple[str, ...] = (STUDENT_OUTPUT_DEFAULT, "linear")
#: Teacher projections: none (the default), a frozen orthonormal embedding, or the 1x1 conv + BN + ReLU guide.
PROJECTION_DEFAULT = "none"
PROJECTIONS: tuple[str, ...] = (PROJECTION_DEFAULT, "orthonormal", "guide")

#: The device a command uses when none is named: CUDA if present, else the CPU (rd.devices).
DEVICE_DEFAULT = "auto"

#: The paper's recipe: the defaults of ``python -m rd train`` and of ``TrainConfig``.
RECIPE: dict[str, Any] = {"image_size": 256, "epochs": 200, "batch_size": 16, "seed": 0, "threads": 1,
                          "eval_every": 0, "device": DEVICE_DEFAULT}

#: Seconds between resume checkpoints of ``rd.train.train`` (0: after every epoch). Not part of
#: a run's identity: it changes how much work a killed run loses, never a number.
CHECKPOINT_EVERY_S = 60.0


@dataclass(frozen=True)
class Rule:
    """What one parameter may be. ``kind`` is int, float, str or bool; bounds are inclusive
    unless ``above``/``below`` (exclusive) are used instead of ``minimum``/``maximum``."""

    kind: type
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    below: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    example: str = ""
    meaning: str = ""

    def describe(self) -> str:
        """'an integer >= 32 and a multiple of 32', 'one of adam, adamw, sgd', ..."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern:
            return f"of the form {self.example or self.pattern}"
        what = {int: "an integer", float: "a finite number", bool: "true or false", str: "a text"}[self.kind]
        parts = [f">= {_fmt(self.minimum)}" if self.minimum is not None else "",
                 f"> {_fmt(self.above)}" if self.above is not None else "",
                 f"<= {_fmt(self.maximum)}" if self.maximum is not None else "",
                 f"< {_fmt(self.below)}" if self.below is not None else ""]
        bounds = " and ".join(p for p in parts if p)
        out = f"{what} {bounds}".strip()
        if self.multiple_of:
            out += f" and a multiple of {self.multiple_of}"
        return out

    def violation(self, value: Any) -> str | None:
        """None if ``value`` is allowed (after :meth:`convert`), else why not."""
        try:
            value = self.convert(value)
        except ValueError as exc:
            return str(exc)
        return None

    def convert(self, value: Any) -> Any:
        """The value as the parameter's type, or ValueError('must be ..., got ...')."""
        bad = ValueError(f"must be {self.describe()}, got {value!r}")
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise bad
        if self.kind is str:
            if not isinstance(value, str):
                raise bad
            if self.choices and value not in self.choices:
                raise bad
            if self.pattern and not re.fullmatch(self.pattern, value):
                raise bad
            return value
        # numbers: a boolean is not a number here (JSON true would otherwise be 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        if self.kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                value = int(value)
        else:
            value = float(value)
        if ((self.minimum is not None and value < self.minimum) or (self.above is not None and value <= self.above)
                or (self.maximum is not None and value > self.maximum)
                or (self.below is not None and value >= self.below)
                or (self.multiple_of and value % self.multiple_of)):
            raise bad
        return value

    def parse(self, text: str) -> Any:
        """A command-line string -> the value (strict: '3.0' is not an integer, 'true' not a number)."""
        text = text.strip()
        if self.kind is int:
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise ValueError(f"must be {self.describe()}, got {text!r}")
            return self.convert(int(text))
        if self.kind is float:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"must be {self.describe()}, got {text!r}") from None
            return self.convert(number)
        return self.convert(text)


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


_SIZE = dict(kind=int, minimum=32, multiple_of=32, example="256",
             meaning="square input size in pixels (the OCBE embedding is at stride 32)")
_DEVICE = r"auto|cpu|cuda(:[0-9]+)?"
SEED_LIMIT = 2**31

#: Every numeric/choice parameter of the CLI and the config, by its config/attribute name.
RULES: dict[str, Rule] = {
    "image_size": Rule(**_SIZE),
    "epochs": Rule(int, minimum=1, example="200", meaning="training epochs"),
    "batch_size": Rule(int, minimum=2, example="16", meaning="training batch size (BatchNorm needs >= 2)"),
    # < 2**31: the data order seeds torch with seed * 100_003 + epoch (rd.train.epoch_order),
    # which must stay below 2**64; 2**31 also fits every 32-bit seed consumer
    "seed": Rule(int, minimum=0, below=SEED_LIMIT, example="0", meaning="random seed"),
    "threads": Rule(int, minimum=1, example="1", meaning="CPU threads"),
    "eval_every": Rule(int, minimum=0, example="0", meaning="test metrics every N epochs (0: never)"),
    "failure_cases": Rule(int, minimum=0, example="4"),
    "checkpoint_every": Rule(float, minimum=0, example="60",
                             meaning="seconds between resume checkpoints (0: after every epoch)"),
    "device": Rule(str, pattern=_DEVICE, example="auto, cpu, cuda or cuda:N"),
    "complexity_device": Rule(str, pattern=r"cpu|cuda(:[0-9]+)?", example="cpu, cuda or cuda:N"),
    "throughput_batch_size": Rule(int, minimum=1, example="16", meaning="batch of the throughput figure"),
    "inference_batch_size": Rule(int, minimum=1, example="16", meaning="images per forward pass"),
    "opset": Rule(int, minimum=14, maximum=20, example="17",
                  meaning="ONNX opset (torch's TorchScript exporter goes up to 20)"),
    # prepare-data (embedded dataset)
    "n_train": Rule(int, minimum=1, example="100"),
    "n_test_good": Rule(int, minimum=1, example="20"),
    "n_per_defect": Rule(int, minimum=1, example="10"),
    "crop_size": Rule(int, minimum=48, maximum=192, example="128",
                      meaning="side of the generated crops in pixels (the held-out test band is 192 rows)"),
    # a category is one folder name under the dataset root: never '.', '..', a hidden name or a path
    "category": Rule(str, pattern=CATEGORY_PATTERN, example="one folder name of letters, digits, _ . - not starting with '.' (e.g. bottle)",
                     meaning="dataset category: one folder name under the dataset root"),
    # held-out good images (rd.data.holdout) and the learning-rate selection on them
    "validation_fraction": Rule(float, minimum=0, maximum=0.5, example="0.1",
                                meaning="fraction of train/good held out for the threshold and the lr "
                                        "selection (0: the paper's split, train on all of them)"),
    "lr_select_epochs": Rule(int, minimum=1, example="50", meaning="epochs of each lr selection run"),
    "lr": Rule(float, above=0, example="0.005", meaning="peak learning rate"),
}

#: Default of ``dataset.validation_fraction`` and of the CLI's ``--validation-fraction``. A
#: deviation from the paper (which trains on all of train/good); 0 restores the paper's split.
#: ``TrainConfig`` defaults to 0 instead: that is what a model.pt written before the key existed saw.
VALIDATION_FRACTION = 0.1


def held_out_count(n: int, fraction: float) -> int:
    """How many of ``n`` good training images are held out at ``fraction``: rounded half up,
    at least 1 when fraction > 0, and never so many that fewer than 2 stay for training
    (BatchNorm needs 2). RDError when ``n`` cannot give both."""
    fraction = check("validation_fraction", fraction)
    if fraction == 0:
        return 0
    if n < 3:
        raise RDError(f"Only {n} good training image(s): cannot hold out {fraction:g} of them and keep 2 "
                      "for training.", "add training images, or set validation_fraction to 0 "
                      "(--validation-fraction 0; the threshold then comes from training images).")
    return min(max(1, math.floor(fraction * n + 0.5)), n - 2)


def default_lr_select_epochs(epochs: int) -> int:
    """``lr_select_epochs`` when a setting leaves it out: a quarter of the arm's epochs, at least 1."""
    return max(1, int(epochs) // 4)

#: Keys of a training setting (``--setting`` JSON, ``settings.<name>`` in the config).
SETTING_RULES: dict[str, Rule] = {
    "optimizer": Rule(str, choices=("adam", "adamw", "sgd"), example="adam"),
    "lr": RULES["lr"],
    "betas": Rule(float, minimum=0, below=1, example="[0.5, 0.999]", meaning="each Adam/AdamW beta"),
    "weight_decay": Rule(float, minimum=0, example="0.05"),
    "schedule": Rule(str, choices=("constant", "cosine"), example="cosine"),
    "warmup_epochs": Rule(float, minimum=0, example="1", meaning="linear warm-up epochs (fractions allowed)"),
    "momentum": Rule(float, minimum=0, example="0.9", meaning="SGD momentum"),
    "min_lr": Rule(float, minimum=0, example="0", meaning="learning rate the cosine schedule decays to"),
}
#: Keys of a config setting that choose its learning rate (rd.lr_select) rather than train:
#: the workflow takes them out before the setting reaches ``python -m rd train``.
LR_SELECTION_KEYS = ("lr_grid", "lr_select_epochs")
#: The paper's training setting (Deng & Li 2022): Adam, lr 0.005, betas (0.5, 0.999), constant lr.
BASELINE: dict[str, Any] = {"optimizer": "adam", "lr": 0.005, "betas": [0.5, 0.999], "weight_decay": 0.0,
                            "schedule": "constant"}
#: What a setting leaves out: the baseline's, and the keys only other optimizers/schedules read.
SETTING_DEFAULTS: dict[str, Any] = {**BASELINE, "warmup_epochs": 0, "momentum": 0.9, "min_lr": 0.0}
SETTING_REQUIRED = ("optimizer", "lr")


# --------------------------------------------------------------------------- command line
def _fix(name: str, rule: Rule) -> str:
    if rule.pattern or rule.choices:
        return f"use {rule.example if rule.pattern else ', '.join(rule.choices or ())}."
    return f"use {rule.describe()}" + (f", e.g. {rule.example}" if rule.example else "") + "."


def argtype(name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` function for rule ``name``: converts or explains in one line."""
    rule = RULES[name]

    def parse(text: str) -> Any:
        try:
            return rule.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}. Fix: {_fix(name, rule)}") from None

    parse.__name__ = name   # argparse names the type in some messages
    return parse


_RECIPE_DEFAULT: Any = object()


def arg(name: str, *, default: Any = _RECIPE_DEFAULT, help: str | None = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``add_argument``: the rule's type and the recipe's default (if it
    has one; ``default=None`` for none)."""
    rule = RULES[name]
    kwargs: dict[str, Any] = {"type": argtype(name)}
    if default is _RECIPE_DEFAULT:
        default = RECIPE.get(name)
    if default is not None:
        kwargs["default"] = default
    text = help or rule.meaning or name.replace("_", " ")
    kwargs["help"] = f"{text}; {rule.describe()}" + (f" (default {default})" if default is not None else "")
    kwargs.update(extra)
    return kwargs


def check(name: str, value: Any, where: str | None = None) -> Any:
    """``value`` converted by rule ``name``, or RDError naming ``where`` (default: the name)."""
    rule = RULES[name]
    try:
        return rule.convert(value)
    except ValueError as exc:
        raise RDError(f"{where or name} {exc}.", _fix(name, rule)) from None


# --------------------------------------------------------------------------- comparisons
def repeated_comparisons(comparisons: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """(i, j) for each comparison i naming the pair of arms of an earlier comparison j, in
    either order: [a, b] and [b, a] test the same pair (the order only sets the sign of the
    difference), and a pair listed twice enters Holm's family twice, doubling its p. Asked by
    the config check (rd.config_check) and by ``rd stats`` (rd.stats.compute_stats)."""
    first: dict[frozenset[str], int] = {}
    out = []
    for i, (arm_a, arm_b) in enumerate(comparisons):
        j = first.setdefault(frozenset((arm_a, arm_b)), i)
        if j != i:
            out.append((i, j))
    return out


# --------------------------------------------------------------------------- settings
def lr_grid_errors(setting: dict[str, Any], epochs: Any = None) -> list[str]:
    """Problems of a config setting's learning-rate selection keys (``lr_grid``: at least two
    distinct positive numbers; ``lr_select_epochs``: an integer >= 1, at least the setting's
    warm-up), as 'key: what is wrong' lines."""
    lines = []
    grid = setting.get("lr_grid")
    if "lr_grid" in setting:
        lr_rule = SETTING_RULES["lr"]
        if not isinstance(grid, (list, tuple)) or any(lr_rule.violation(v) for v in grid):
            lines.append(f"lr_grid: must be a list of learning rates, each {lr_rule.describe()}, got {grid!r}")
        elif len({float(v) for v in grid}) < 2:
            lines.append(f"lr_grid: needs at least 2 distinct learning rates to choose from, got {list(grid)!r}")
        elif SETTING_RULES["min_lr"].violation(setting.get("min_lr", 0)) is None and \
                min(grid) < setting.get("min_lr", 0):
            lines.append(f"lr_grid: {min(grid)} is below min_lr {setting['min_lr']} (the cosine schedule decays "
                         "from lr to min_lr)")
    elif "lr_select_epochs" in setting:
        lines.append("lr_select_epochs: set without lr_grid (it is the length of the lr selection runs)")
    if "lr_select_epochs" in setting:
        problem = RULES["lr_select_epochs"].violation(setting["lr_select_epochs"])
        if problem:
            lines.append(f"lr_select_epochs: {problem}")
    if "lr_grid" in setting and not lines:
        select = setting.get("lr_select_epochs")
        if select is None and epochs is not None and RULES["epochs"].violation(epochs) is None:
            select = default_lr_select_epochs(epochs)
        warmup = setting.get("warmup_epochs", 0)
        if select is not None and SETTING_RULES["warmup_epochs"].violation(warmup) is None and warmup > select:
            lines.append(f"lr_select_epochs: the lr selection runs {select} epoch(s), less than warmup_epochs "
                         f"{warmup} (set lr_select_epochs >= {warmup})")
    return lines


def setting_errors(setting: Any, epochs: Any = None, *, required: bool = False,
                   lr_selection: bool = False) -> list[str]:
    """Every problem of one training setting, as 'key: what is wrong' lines (empty: fine).

    ``epochs`` (when known) also checks ``warmup_epochs <= epochs``; ``required`` asks for the
    keys the config must name (the CLI fills the paper's baseline instead); ``lr_selection``
    allows and checks the config's ``lr_grid`` / ``lr_select_epochs`` (a training run takes the
    chosen lr instead, so ``python -m rd train --setting`` refuses them).
    """
    if not isinstance(setting, dict):
        return [f"must be a mapping of setting keys ({', '.join(SETTING_RULES)}), got {setting!r}"]
    lines = []
    if lr_selection:
        lines += lr_grid_errors(setting, epochs)
        setting = {k: v for k, v in setting.items() if k not in LR_SELECTION_KEYS}
    else:
        lines += [f"{key}: chooses the lr in the workflow (one selection job per value); a training run takes "
                  "one lr: give it as lr, or pass the selection's JSON with --lr-selection"
                  for key in LR_SELECTION_KEYS if key in setting]
        setting = {k: v for k, v in setting.items() if k not in LR_SELECTION_KEYS}
    unknown = [k for k in setting if k not in SETTING_RULES]
    for key in unknown:
        import difflib

        close = difflib.get_close_matches(str(key), list(SETTING_RULES), n=1)
        lines.append(f"{key}: unknown setting key.{f' Did you mean {close[0]!r}?' if close else ''} "
                     f"Allowed: {', '.join(SETTING_RULES)}")
    if required:
        lines += [f"{key}: required" for key in SETTING_REQUIRED if key not in setting]
    values: dict[str, Any] = {}
    for key, value in setting.items():
        if key not in SETTING_RULES:
            continue
        rule = SETTING_RULES[key]
        if key == "betas":
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                lines.append(f"betas: must be two numbers [beta1, beta2], each {rule.describe()}, got {value!r}")
                continue
            bad = [b for b in value if rule.violation(b)]
            if bad:
                lines.append(f"betas: each must be {rule.describe()}, got {list(value)!r}")
                continue
            values[key] = [rule.convert(b) for b in value]
            continue
        problem = rule.violation(value)
        if problem:
            lines.append(f"{key}: {problem}")
        else:
            values[key] = rule.convert(value)
    full = {**SETTING_DEFAULTS, **values}
    if "min_lr" in values and "lr" in values and full["min_lr"] > full["lr"]:
        lines.append(f"min_lr: {full['min_lr']} is above lr {full['lr']} (the cosine schedule decays from lr to min_lr)")
    epochs_ok = RULES["epochs"].violation(epochs) is None if epochs is not None else False
    if "warmup_epochs" in values and epochs_ok and full["warmup_epochs"] > epochs:
        lines.append(f"warmup_epochs: {full['warmup_epochs']} is more than the {epochs} training epoch(s)")
    return lines


def check_setting(setting: Any, epochs: int | None = None, where: str = "setting") -> dict[str, Any]:
    """The setting with the paper's baseline filled in, or RDError listing what is wrong."""
    lines = setting_errors(setting, epochs)
    if lines:
        raise RDError(f"Invalid training {where}: {'; '.join(lines)}.",
                      "correct these keys, e.g. {\"optimizer\": \"adam\", \"lr\": 0.005, \"betas\": [0.5, 0.999]} "
                      "(every key and its allowed values: docs/errors.md).")
    full = {**SETTING_DEFAULTS, **setting}
    return {k: (SETTING_RULES[k].convert(v) if k != "betas" else [float(b) for b in v]) for k, v in full.items()}
