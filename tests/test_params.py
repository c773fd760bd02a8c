"""The one table of parameter rules (rd.params) and the config check built on it (rd.config_check).

In-process and fast: every CLI flag with a rule and every setting key gets an invalid value of
each kind (wrong type, negative, zero, NaN, inf, boolean) and must end in exit 2 and one
``error: ... Fix: ...`` line; the config check must stop what JSON schema lets through; the
defaults, the schema's bounds and the rules must agree.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rd import params
from rd.cli import build_parser, main
from rd.config_check import InvalidConfig, check_config
from tests.helpers.params_cases import CATEGORY_KINDS, FLAGS, KINDS, SETTING_KINDS, setting_valid, valid

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
def test_every_numeric_flag_has_a_rule():
    """No `type=int` left behind: a flag that takes a number gets it from the rule table."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = [(c, a.option_strings[0]) for c, p in sub.choices.items() for a in p._actions
            if a.type in (int, float)]
    assert not bare, bare
    assert len(FLAGS) >= 20, FLAGS


def _base_args(command: str, tmp: Path) -> list[str]:
    """Required arguments of ``command``, all pointing at nothing: parsing must fail first."""
    return {
        "prepare-data": ["prepare-data", "--dataset", "mvtec", "--root", str(tmp / "none"), "--category", "x",
                         "--out", str(tmp / "out" / "m.json")],
        "smoke": ["smoke", "--backbone", "resnet18", "--out", str(tmp / "out" / "s.json")],
        "complexity": ["complexity", "--backbone", "resnet18", "--image-size", "64", "--out", str(tmp / "out" / "c.json")],
        "train": ["train", "--data-root", str(tmp / "none"), "--category", "x", "--backbone", "resnet18",
                  "--out-dir", str(tmp / "out")],
        "evaluate": ["evaluate", "--data-root", str(tmp / "none"), "--category", "x", "--model", str(tmp / "m.pt"),
                     "--out-dir", str(tmp / "out")],
        "lr-select": ["lr-select", "--data-root", str(tmp / "none"), "--category", "x", "--backbone", "resnet18",
                      "--lr", "0.001", "--select-epochs", "1", "--out", str(tmp / "out" / "lr.json")],
        "predict": ["predict", str(tmp / "run"), str(tmp / "images"), "--out", str(tmp / "out")],
        "export": ["export", str(tmp / "run"), "--out", str(tmp / "out" / "m.onnx")],
    }[command]


@pytest.mark.parametrize("command,flag,rule", FLAGS, ids=[f"{c}{f}" for c, f, _ in FLAGS])
def test_flag_refuses_each_kind_of_bad_value(command, flag, rule, tmp_path, capsys):
    checked = 0
    for kind, text in (CATEGORY_KINDS if rule == "category" else KINDS).items():
        if valid(params.RULES[rule], text):
            continue
        with pytest.raises(SystemExit) as info:
            main([*_base_args(command, tmp_path), flag, text])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert info.value.code == 2, (kind, err)
        assert len(lines) == 1 and lines[0].startswith(f"error: argument {flag}") and " Fix: " in lines[0], (kind, err)
        assert repr(text) in lines[0] or text in lines[0], (kind, lines)
        assert "Traceback" not in err
        checked += 1
    assert checked >= 5
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", list(params.SETTING_RULES))
def test_setting_key_refuses_each_kind_of_bad_value(key, tmp_path, capsys):
    args = _base_args("train", tmp_path)
    for kind, value in SETTING_KINDS.items():
        if setting_valid(key, value):
            continue
        text = json.dumps({key: value})   # NaN/Infinity: JSON as Python writes it
        rc = main([*args, "--setting", text, "--epochs", "3"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2, (kind, err)
        assert len(lines) == 1 and lines[0].startswith("error: Invalid training --setting:"), (kind, err)
        assert f"{key}:" in lines[0] and " Fix: " in lines[0], (kind, lines)
    assert not (tmp_path / "out").exists()   # refused before anything was created


def test_setting_cross_rules():
    assert params.setting_errors({"lr": 0.001, "min_lr": 0.01}) == [
        "min_lr: 0.01 is above lr 0.001 (the cosine schedule decays from lr to min_lr)"]
    assert params.setting_errors({"warmup_epochs": 5}, epochs=4) == [
        "warmup_epochs: 5.0 is more than the 4 training epoch(s)"]
    assert params.setting_errors({"warmup_epochs": 4}, epochs=4) == []
    assert params.setting_errors({"optimizer": "adam"}, required=True) == ["lr: required"]
    full = params.check_setting({"optimizer": "sgd", "lr": 1})
    assert full["lr"] == 1.0 and full["momentum"] == 0.9 and full["betas"] == [0.5, 0.999]


# --------------------------------------------------------------------------- one source of defaults
def test_the_recipe_is_the_papers():
    """256 px, 200 epochs, batch 16 (Deng & Li 2022); the CLI and TrainConfig read it from RECIPE."""
    assert params.RECIPE["image_size"] == 256 and params.RECIPE["epochs"] == 200 and params.RECIPE["batch_size"] == 16
    assert params.BASELINE == {"optimizer": "adam", "lr": 0.005, "betas": [0.5, 0.999], "weight_decay": 0.0,
                               "schedule": "constant"}


def test_the_schemas_baseline_setting_is_rd_params_baseline():
    """The schema (YAML, it cannot import) holds the one data copy of the baseline setting: the
    workflow's default `settings.baseline` must be the library's BASELINE."""
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["settings"]["default"]["baseline"] == params.BASELINE


def test_the_schemas_student_choices_are_rd_params():
    """A backbone's `student` and `student_output` in the schema (YAML's copies) are the
    library's: the same default student and the same outputs with the same default."""
    backbone = yaml.safe_load(SCHEMA.read_text())["properties"]["backbones"]["additionalProperties"]["properties"]
    assert backbone["student"]["default"] == params.STUDENT_DEFAULT
    assert tuple(backbone["student_output"]["enum"]) == params.STUDENT_OUTPUTS
    assert backbone["student_output"]["default"] == params.STUDENT_OUTPUT_DEFAULT


def test_schema_defaults_are_the_default_runs():
    """The workflow's defaults are its small default run's (config.yaml), documented as such."""
    schema = yaml.safe_load(SCHEMA.read_text())
    run = yaml.safe_load((REPO / "config.yaml").read_text())
    for key in ("image_size", "epochs", "batch_size"):
        assert schema["properties"][key]["default"] == run[key], key
    assert "default run" in schema["properties"]["epochs"]["description"]
    assert "rd.params.RECIPE" in schema["description"]


def test_schema_bounds_agree_with_the_rules():
    """The schema's own checks (shown in editors, run first) say what the rules say."""
    from rd.config_check import GENERATE_RULES, TOP_LEVEL_RULES

    schema = yaml.safe_load(SCHEMA.read_text())
    pairs = [(schema["properties"][k], params.RULES[r]) for k, r in TOP_LEVEL_RULES.items()]
    generate = schema["properties"]["dataset"]["properties"]["generate"]["properties"]
    pairs += [(generate[k], params.RULES[r]) for k, r in GENERATE_RULES.items()]
    setting = schema["properties"]["settings"]["additionalProperties"]["properties"]
    pairs += [(setting[k] if k != "betas" else setting[k]["items"], r) for k, r in params.SETTING_RULES.items()]
    for sub, rule in pairs:
        assert sub.get("minimum") == rule.minimum, (sub, rule)
        assert sub.get("maximum") == rule.maximum, (sub, rule)
        assert sub.get("exclusiveMinimum") == rule.above, (sub, rule)
        assert sub.get("exclusiveMaximum") == rule.below, (sub, rule)
        assert sub.get("multipleOf") == rule.multiple_of, (sub, rule)
        assert tuple(sub["enum"]) == rule.choices if "enum" in sub else rule.choices is None, (sub, rule)
        if "pattern" in sub:
            assert sub["pattern"] == f"^({rule.pattern})$", (sub, rule)


# --------------------------------------------------------------------------- the config check
def _config(**changes) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return cfg


def test_default_config_passes_and_gets_defaults():
    cfg = _config()
    check_config(cfg, SCHEMA)
    assert cfg["backbones"]["resnet18"]["projection"] is False


@pytest.mark.parametrize("changes,expected", [
    ({"settings__baseline__lr": math.nan}, "settings.baseline.lr: must be a finite number > 0, got nan."),
    ({"settings__baseline__lr": math.inf}, "settings.baseline.lr: must be a finite number > 0, got inf."),
    ({"settings__tuned__weight_decay": math.inf}, "settings.tuned.weight_decay: must be a finite number >= 0, got inf"),
    ({"batch_size": 1}, "batch_size: 1 is less than the minimum of 2."),
    ({"settings__tuned__warmup_epochs": 9}, "settings.tuned.warmup_epochs: 9.0 is more than the 4 training epoch(s)."),
    ({"settings__tuned__min_lr": 0.01}, "settings.tuned.min_lr: 0.01 is above lr 0.001"),
    ({"settings__baseline__betas": [0.5, math.nan]}, "settings.baseline.betas: each must be a finite number >= 0 and < 1"),
], ids=["lr_nan", "lr_inf", "wd_inf", "batch_1", "warmup_gt_epochs", "min_lr_gt_lr", "beta_nan"])
def test_config_check_stops_what_every_job_would_fail_on(changes, expected):
    with pytest.raises(InvalidConfig) as info:
        check_config(_config(**changes), SCHEMA)
    message = str(info.value)
    assert message.startswith("Invalid configuration (nothing was run):") and "\nFix: " in message
    assert expected in message, message


def test_config_check_lists_every_problem_at_once():
    cfg = _config(settings__baseline__lr=math.nan, settings__tuned__min_lr=0.5, settings__tuned__warmup_epochs=7)
    with pytest.raises(InvalidConfig) as info:
        check_config(cfg, SCHEMA)
    assert len(info.value.lines) == 3, info.value.lines


def test_config_check_does_not_mutate_on_failure_of_the_schema():
    """Schema errors come alone (the rules would repeat them in other words)."""
    cfg = _config(epochs="three")
    with pytest.raises(InvalidConfig) as info:
        check_config(copy.deepcopy(cfg), SCHEMA)
    assert info.value.lines == ["epochs: 'three' is not of type 'integer'."]


# --------------------------------------------------------------------------- the rules themselves
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=5), st.none())


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(params.RULES)), value=NUMBERS)
def test_a_rule_converts_to_an_allowed_value_or_says_why(name, value):
    rule = params.RULES[name]
    try:
        out = rule.convert(value)
    except ValueError as exc:
        assert str(exc).startswith(f"must be {rule.describe()}, got "), exc
        return
    assert not isinstance(value, bool) or rule.kind is bool
    if rule.kind in (int, float):
        assert isinstance(out, rule.kind) and math.isfinite(out)
        assert rule.minimum is None or out >= rule.minimum
        assert not rule.multiple_of or out % rule.multiple_of == 0


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(params.RULES)),
       value=st.one_of(st.integers(-10**4, 10**4), st.floats(allow_nan=True, allow_infinity=True)))
def test_command_line_text_is_read_like_the_value(name, value):
    """`--flag TEXT` accepts exactly the values a config may hold (ints as ints: '1.0' is no integer)."""
    rule = params.RULES[name]
    text = str(value)
    try:
        parsed = rule.parse(text)
    except ValueError as exc:
        assert text in str(exc)
        assert rule.kind is str or isinstance(value, float) and rule.kind is int or rule.violation(value)
        return
    # a text rule reads a config's text: YAML 01 (an int) is no category, the text "01" is
    assert parsed == rule.convert(text if rule.kind is str else value)


def test_hypothesis_is_a_declared_test_dependency():
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(r.startswith("hypothesis") for r in extra)
    assert set(extra) <= set(pip)


def test_schema_and_rule_problems_come_in_one_list():
    """batch_size 1 (the schema says) and lr NaN (only the rules say) are reported together."""
    with pytest.raises(InvalidConfig) as info:
        check_config(_config(batch_size=1, settings__baseline__lr=math.nan), SCHEMA)
    assert info.value.lines == ["batch_size: 1 is less than the minimum of 2.",
                                "settings.baseline.lr: must be a finite number > 0, got nan."]


def test_check_names_where_the_value_came_from():
    from rd.errors import RDError

    assert params.check("epochs", 3.0) == 3
    with pytest.raises(RDError, match=r"^predict --image-size must be an integer >= 32 and a multiple of 32, got 48\. "
                                      r"Fix: use .* e\.g\. 256\.$"):
        params.check("image_size", 48, where="predict --image-size")
