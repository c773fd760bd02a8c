"""The config check and the CLI refuse values whose shape is right but whose meaning is not:
a NaN/inf decision threshold, a comparison listed twice (in either order), a seed too large
for the random generators. Each is refused before any job starts, with one line per problem.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rd import params
from rd.cli import main
from rd.config_check import InvalidConfig, check_config
from rd.errors import RDError
from rd.stats import compute_stats

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
A, B, C = "resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned"


def _config(**top) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(top)
    return cfg


def _lines(cfg: dict) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        check_config(cfg, SCHEMA)
    return info.value.lines


# --------------------------------------------------------------------------- comparisons
def test_a_comparison_listed_twice_is_refused():
    assert _lines(_config(comparisons=[[A, B], [A, C], [A, B]])) == [
        f"comparisons[2]: [{A}, {B}] compares the same pair as comparisons[0]; "
        "list each pair once (the order only sets the sign of the difference)."]


def test_a_comparison_listed_in_both_orders_is_refused():
    assert _lines(_config(comparisons=[[A, B], [B, A]])) == [
        f"comparisons[1]: [{B}, {A}] compares the same pair as comparisons[0] [{A}, {B}]; "
        "list each pair once (the order only sets the sign of the difference)."]


def test_distinct_comparisons_pass():
    check_config(_config(comparisons=[[A, B], [A, C], [B, C]]), SCHEMA)
    assert params.repeated_comparisons([(A, B), (B, C), (C, A), (B, A), (A, B)]) == [(3, 0), (4, 0)]


def _summary() -> pd.DataFrame:
    return pd.DataFrame([{"category": "grass", "seed": s, "arm": arm, "backbone": arm.split("/")[0],
                          "setting": arm.split("/")[1], "image_auroc": 0.9 + 0.01 * s, "pixel_auroc": 0.9,
                          "aupro": 0.8} for arm in (A, B) for s in (0, 1, 2)])


def test_stats_refuses_a_pair_listed_in_both_orders():
    with pytest.raises(RDError, match=r"tests the same pair as .* Holm's correction would count that pair twice"):
        compute_stats(_summary(), [(A, B), (B, A)], ["image_auroc"])
    with pytest.raises(RDError, match="the same pair"):
        compute_stats(_summary(), [(A, B), (A, B)], ["image_auroc"])


def test_rd_stats_cli_one_line_and_exit_2(tmp_path, capsys):
    summary = tmp_path / "summary.csv"
    _summary().to_csv(summary, index=False)
    out = tmp_path / "stats.csv"
    code = main(["stats", "--summary", str(summary), "--comparison", A, B, "--comparison", B, A, "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: Comparison [") and " Fix: list each pair of arms once" in err[0]
    assert not out.exists()


# --------------------------------------------------------------------------- threshold
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, ".nan", ".inf"])
def test_predict_threshold_nan_or_inf_is_refused_by_the_config_check(value, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    cfg = _config(predict={"arm": A, "category": "grass", "seed": 0, "images": [str(image)], "threshold": value})
    lines = _lines(cfg)
    assert len(lines) == 1 and lines[0].startswith("predict.threshold: must be good, f1max or a finite number, got ")


def test_predict_threshold_number_or_choice_passes(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    for value in (0.5, 3, "good", "f1max"):
        check_config(_config(predict={"arm": A, "category": "grass", "images": [str(image)], "threshold": value}),
                     SCHEMA)


@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_cli_threshold_nan_or_inf_is_one_line(command, value, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"not read: the threshold is refused first")
    args = [command, str(run), *([str(run)] if command == "predict" else []),
            "--out", str(tmp_path / ("out" if command == "predict" else "m.onnx")), f"--threshold={value}"]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "is not a finite number. Fix: " in err[0], err


# --------------------------------------------------------------------------- seeds
LIMIT = 2**31


def test_seed_rule_is_0_to_2_pow_31():
    rule = params.RULES["seed"]
    assert rule.convert(LIMIT - 1) == LIMIT - 1
    assert rule.violation(LIMIT) == f"must be an integer >= 0 and < {LIMIT}, got {LIMIT}"
    assert rule.violation(200000000000000)


def test_the_largest_allowed_seed_runs_every_seed_consumer():
    """Where a seed goes: random/numpy/torch seeding, the data order and the texture generator."""
    from rd.data.textures import _rng
    from rd.run import seed_everything
    from rd.train import epoch_order

    seed_everything(LIMIT - 1)
    assert sorted(epoch_order(5, LIMIT - 1, 10_000).tolist()) == [0, 1, 2, 3, 4]
    _rng(LIMIT - 1, "brick", "train").random()
    with pytest.raises((RuntimeError, ValueError, OverflowError)):
        epoch_order(5, 200000000000000, 0)   # what the bound keeps from every train job


@pytest.mark.parametrize("command", ["train", "prepare-data"])
def test_cli_seed_too_large_is_one_line(command, tmp_path, capsys):
    base = {"train": ["train", "--data-root", str(tmp_path), "--category", "x", "--backbone", "resnet18",
                      "--out-dir", str(tmp_path / "out")],
            "prepare-data": ["prepare-data", "--dataset", "textures", "--root", str(tmp_path), "--category", "brick",
                             "--out", str(tmp_path / "out.json")]}[command]
    with pytest.raises(SystemExit) as info:
        main([*base, "--seed", "200000000000000"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(err) == 1, err
    assert err[-1].startswith("error: argument --seed: must be an integer >= 0 and < 2147483648") and " Fix: " in err[-1]


@pytest.mark.parametrize("where,value", [("seeds", [0, LIMIT]), ("seeds", [200000000000000]),
                                         ("dataset_seed", LIMIT), ("predict_seed", LIMIT)])
def test_config_seed_too_large_is_refused(where, value, tmp_path):
    cfg = _config()
    if where == "seeds":
        cfg["seeds"] = value
    elif where == "dataset_seed":
        cfg["dataset"]["seed"] = value
    else:
        image = tmp_path / "x.png"
        image.write_bytes(b"")
        cfg["predict"] = {"arm": A, "category": "grass", "seed": value, "images": [str(image)]}
    lines = _lines(cfg)
    assert len(lines) == 1 and ("maximum of 2147483648" in lines[0] or "< 2147483648" in lines[0]), lines


def test_schema_seed_bounds_are_the_rule():
    schema = yaml.safe_load(SCHEMA.read_text())
    rule = params.RULES["seed"]
    for sub in (schema["properties"]["seeds"]["items"], schema["properties"]["dataset"]["properties"]["seed"],
                schema["properties"]["predict"]["properties"]["seed"]):
        assert sub["minimum"] == rule.minimum and sub["exclusiveMaximum"] == rule.below
