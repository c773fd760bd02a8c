"""Held-out good images (dataset.validation_fraction) and the learning rate chosen on them (lr_grid):
the held-out set is deterministic, the same for every arm, disjoint from training and listed in
the manifest; the predict threshold comes from it (or from training images at fraction 0); the
lr selection picks the lowest held-out loss, writes its JSON, and train uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rd import params
from rd.config_check import InvalidConfig, check_config
from rd.data import good_split, load_split, prepare_category
from rd.data.layout import file_list_sha256
from rd.errors import RDError
from rd.run import TrainConfig
from tests.helpers import workflow_runner as wr
from tests.helpers.dataset_trees import make_mvtec_ad2

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
GENERATE = {"n_train": 12, "n_test_good": 4, "n_per_defect": 2, "size": 64}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A tiny embedded category (12 good training images, 64 px)."""
    base = tmp_path_factory.mktemp("holdout")
    prepare_category("textures", base, "brick", seed=0, generate_options=GENERATE)
    return base


def cfg(root: Path, **kw) -> TrainConfig:
    base = dict(data_root=str(root), category="brick", dataset="textures", backbone="resnet18", image_size=64,
                epochs=1, batch_size=4, seed=0, device="cpu", threads=1, validation_fraction=0.25)
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- the held-out set
@pytest.mark.parametrize("n,fraction,k", [(100, 0.1, 10), (12, 0.25, 3), (5, 0.1, 1), (3, 0.5, 1), (4, 0.5, 2),
                                          (10, 0.05, 1), (100, 0.0, 0)])
def test_held_out_count_rounds_and_keeps_two_for_training(n, fraction, k):
    assert params.held_out_count(n, fraction) == k


def test_held_out_count_refuses_what_cannot_be_split():
    with pytest.raises(RDError, match="cannot hold out") as info:
        params.held_out_count(2, 0.1)
    assert "validation_fraction" in info.value.fix
    with pytest.raises(RDError, match="validation_fraction must be a finite number >= 0 and <= 0.5"):
        params.held_out_count(100, 0.6)


def test_manifest_lists_and_hashes_a_deterministic_held_out_set(root, tmp_path):
    a = prepare_category("textures", root, "brick", seed=0, generate_options=GENERATE, validation_fraction=0.25,
                         manifest_path=tmp_path / "a.json")
    b = prepare_category("textures", root, "brick", seed=0, generate_options=GENERATE, validation_fraction=0.25)
    held = a["held_out"]
    assert held == b["held_out"] == json.loads((tmp_path / "a.json").read_text())["held_out"]
    assert (held["source"], held["n_images"], held["n_training"]) == ("held_out", 3, 9)
    assert held["sha256"] == file_list_sha256(held["files"]) and len(set(held["files"])) == 3
    assert all(f.startswith("train/good/") for f in held["files"])
    # the held-out list changes the manifest (and so the data fingerprint training depends on)
    other = prepare_category("textures", root, "brick", seed=0, generate_options=GENERATE, validation_fraction=0.1)
    assert other["held_out"]["n_images"] == 1 and other["held_out"]["sha256"] != held["sha256"]
    paper = prepare_category("textures", root, "brick", seed=0, generate_options=GENERATE, validation_fraction=0)
    assert (paper["held_out"]["source"], paper["held_out"]["n_images"], paper["held_out"]["n_training"]) == \
        ("training", 0, 12)


def test_held_out_set_is_disjoint_from_training_and_depends_on_seed_and_category(root):
    part = good_split("textures", root, "brick", 0.25, seed=0)
    train = load_split(root, "brick", "train", 64, dataset="textures", validation_fraction=0.25, seed=0)
    held = load_split(root, "brick", "held_out", 64, dataset="textures", validation_fraction=0.25, seed=0)
    everything = load_split(root, "brick", "train", 64, dataset="textures")   # fraction 0: the paper's split
    rel = lambda paths: {Path(p).relative_to(root / "brick").as_posix() for p in paths}  # noqa: E731
    assert rel(held["paths"]) == set(part.held_out_files)
    assert not rel(train["paths"]) & rel(held["paths"])
    assert rel(train["paths"]) | rel(held["paths"]) == rel(everything["paths"]) and len(everything["paths"]) == 12
    # the ranking is by (seed, category, path): other seeds pick other images, the same seed the same
    picks = {tuple(good_split("textures", root, "brick", 0.25, seed=s).held_out_files) for s in range(6)}
    assert len(picks) > 1
    assert good_split("textures", root, "brick", 0.25, seed=3).held_out_files == \
        good_split("textures", root, "brick", 0.25, seed=3).held_out_files


def test_every_arm_trains_without_the_same_held_out_images(root, tmp_path):
    """Two arms (other teacher, other student, other training seed) hold out the very same images,
    and train on the rest only."""
    from rd.train import train

    a = train(cfg(root), tmp_path / "a")
    b = train(cfg(root, backbone="convnext_pico", seed=1), tmp_path / "b")
    assert a["held_out"] == b["held_out"]
    assert a["held_out"]["sha256"] == good_split("textures", root, "brick", 0.25).record()["sha256"]
    assert a["validation_fraction"] == 0.25 and a["n_train_images"] == b["n_train_images"] == 9
    assert a["steps"] == 2   # 9 images, batch 4: 4 + 4 (+ a trailing batch of one, dropped)
    paper = train(cfg(root, validation_fraction=0.0), tmp_path / "paper")
    assert paper["n_train_images"] == 12 and paper["held_out"]["source"] == "training"


def test_mvtec_ad2_holds_out_its_own_validation_images(tmp_path):
    ad2 = make_mvtec_ad2(tmp_path / "ad2")
    part = good_split("mvtec_ad2", ad2, "can", 0.1)
    assert part.source == "validation_split"
    assert part.held_out_files == ["validation/good/000_regular.png", "validation/good/001_regular.png"]
    assert len(part.train) == 4   # train/good is trained on whole
    assert good_split("mvtec_ad2", ad2, "can", 0.0).source == "training"
    manifest = prepare_category("mvtec_ad2", ad2, "can", validation_fraction=0.1)
    assert manifest["held_out"]["source"] == "validation_split" and manifest["held_out"]["n_images"] == 2


# --------------------------------------------------------------------------- the threshold
def _scores_of(model_path: Path, images) -> np.ndarray:
    from rd.method.inference import image_scores, predict
    from rd.run import load_model

    model, c = load_model(model_path)
    return image_scores(predict(model, images, c.image_size, "cpu", c.batch_size))


def test_threshold_is_the_quantile_of_held_out_scores(root, tmp_path):
    from rd.evaluate import evaluate_run
    from rd.use.thresholds import resolve_threshold
    from rd.train import train

    train(cfg(root), tmp_path)
    evaluate_run(tmp_path / "model.pt", data_root=str(root), category="brick", out_dir=tmp_path, device="cpu")
    thr = json.loads((tmp_path / "threshold.json").read_text())
    held = load_split(root, "brick", "held_out", 64, dataset="textures", validation_fraction=0.25)["images"]
    trained_on = load_split(root, "brick", "train", 64, dataset="textures", validation_fraction=0.25)["images"]
    assert (thr["threshold_source"], thr["n_images"], thr["seen_in_training"]) == ("held_out", 3, False)
    assert thr["source"] == "held-out good images (n=3, not seen in training)"
    assert thr["value"] == pytest.approx(float(np.quantile(_scores_of(tmp_path / "model.pt", held), 0.99)), abs=1e-6)
    assert thr["value"] != pytest.approx(float(np.quantile(_scores_of(tmp_path / "model.pt", trained_on), 0.99)))
    got = resolve_threshold("good", tmp_path)
    assert got.value == thr["value"] and "held-out good images (n=3, not seen in training)" in got.source


def test_fraction_zero_takes_the_threshold_from_training_images(root, tmp_path):
    from rd.evaluate import evaluate_run
    from rd.train import train

    train(cfg(root, validation_fraction=0.0), tmp_path)
    evaluate_run(tmp_path / "model.pt", data_root=str(root), category="brick", out_dir=tmp_path, device="cpu")
    thr = json.loads((tmp_path / "threshold.json").read_text())
    assert (thr["threshold_source"], thr["n_images"], thr["seen_in_training"]) == ("training", 12, True)
    assert "seen in training" in thr["source"]
    everything = load_split(root, "brick", "train", 64, dataset="textures")["images"]
    assert thr["value"] == pytest.approx(float(np.quantile(_scores_of(tmp_path / "model.pt", everything), 0.99)),
                                         abs=1e-6)


# --------------------------------------------------------------------------- lr selection
def _fake_run(path: Path, lr: float, loss: float | None) -> Path:
    path.write_text(json.dumps({"lr": lr, "held_out_loss": loss, "backbone": "resnet18", "setting": "tuned",
                                "category": "brick", "seed": 0, "epochs": 1}))
    return path


@pytest.mark.parametrize("losses,chosen", [
    ({0.0005: 0.9, 0.001: 0.7, 0.002: 0.8}, 0.001),
    ({0.0005: 0.7, 0.001: 0.7, 0.002: 0.8}, 0.0005),   # tie: the smaller lr
    ({0.0005: 0.9, 0.001: 0.8, 0.002: None}, 0.001),   # diverged: never chosen
    ({0.0005: 0.9, 0.001: 0.8, 0.002: 0.1}, 0.002),
])
def test_gather_chooses_the_lowest_held_out_loss(tmp_path, losses, chosen):
    from rd.lr_select import gather

    paths = [_fake_run(tmp_path / f"lr{lr}.json", lr, loss) for lr, loss in reversed(losses.items())]
    result = gather(paths, tmp_path / "tuned.json")
    assert result["chosen"] == chosen
    assert result["grid"] == sorted(losses) and result["losses"] == [losses[lr] for lr in sorted(losses)]
    assert json.loads((tmp_path / "tuned.json").read_text()) == result


def test_gather_refuses_mixed_or_all_diverged_runs(tmp_path):
    from rd.lr_select import gather

    a = _fake_run(tmp_path / "a.json", 0.001, None)
    b = _fake_run(tmp_path / "b.json", 0.002, None)
    with pytest.raises(RDError, match="Every lr of the selection diverged"):
        gather([a, b], tmp_path / "out.json")
    c = tmp_path / "c.json"
    c.write_text(json.dumps({**json.loads(b.read_text()), "held_out_loss": 0.5, "backbone": "convnext_pico"}))
    with pytest.raises(RDError, match="disagree on backbone"):
        gather([a, c], tmp_path / "out.json")


def test_selection_trains_on_the_training_split_and_scores_the_held_out_loss(root, tmp_path, monkeypatch):
    """With the held-out loss under the test's control, the selection picks its argmin; no test
    image is ever loaded, and the held-out images the loss sees are the held-out set."""
    import rd.data
    import rd.lr_select as lr_select

    planted = {0.0005: 0.31, 0.001: 0.12, 0.002: 0.47}
    seen_splits, seen_images = [], []
    real_load_split = rd.data.load_split

    def spy_load_split(root_, category, split, *args, **kw):
        seen_splits.append(split)
        return real_load_split(root_, category, split, *args, **kw)

    def planted_loss(model, images, device, batch_size):
        seen_images.append(len(images))
        return planted[current["lr"]]

    current = {}
    monkeypatch.setattr(rd.data, "load_split", spy_load_split)
    monkeypatch.setattr(lr_select, "held_out_loss", planted_loss)
    paths = []
    for lr in planted:
        current["lr"] = lr
        rec = lr_select.selection_run(cfg(root, setting_name="tuned"), lr, 1, tmp_path / f"lr{lr:g}.json")
        assert rec["held_out_loss"] == planted[lr] and rec["lr"] == lr and rec["epochs"] == 1
        assert not (tmp_path / f"lr{lr:g}.train").exists()   # the selection's training folder is removed
        paths.append(tmp_path / f"lr{lr:g}.json")
    assert "test" not in seen_splits and set(seen_splits) == {"train", "held_out"}
    assert seen_images == [3, 3, 3]
    assert lr_select.gather(paths, tmp_path / "tuned.json")["chosen"] == 0.001


def test_selection_needs_held_out_images(root, tmp_path):
    from rd.lr_select import selection_run

    with pytest.raises(RDError, match="needs held-out good images"):
        selection_run(cfg(root, validation_fraction=0.0), 0.001, 1, tmp_path / "lr.json")


def test_real_selection_through_the_cli_then_train_takes_the_chosen_lr(root, tmp_path):
    from tests.helpers.reliability import rd   # the real command line, forked from a warm interpreter

    common = ["--data-root", str(root), "--dataset", "textures", "--category", "brick", "--backbone", "resnet18",
              "--setting-name", "tuned", "--setting", '{"optimizer": "adam", "lr": 0.005}',
              "--image-size", "64", "--batch-size", "4", "--seed", "0", "--device", "cpu",
              "--validation-fraction", "0.25"]
    runs = []
    for lr in ("0.0001", "0.01"):
        out = tmp_path / "lr" / f"lr{lr}.json"
        proc = rd("lr-select", *common, "--lr", lr, "--select-epochs", "1", "--out", str(out), cwd=REPO)
        assert proc.rc == 0, proc.stderr
        rec = json.loads(out.read_text())
        assert rec["held_out"]["n_images"] == 3 and rec["held_out_loss"] > 0 and rec["diverged"] is False
        runs.append(rec)
    selection = tmp_path / "tuned.json"
    proc = rd("lr-gather", "--runs", *[str(tmp_path / "lr" / f"lr{lr}.json") for lr in ("0.0001", "0.01")],
              "--out", str(selection), cwd=REPO)
    assert proc.rc == 0, proc.stderr
    chosen = json.loads(selection.read_text())
    best = min(runs, key=lambda r: (r["held_out_loss"], r["lr"]))["lr"]
    assert chosen["chosen"] == best and chosen["losses"] == [r["held_out_loss"] for r in runs]
    run = tmp_path / "run"
    proc = rd("train", *common, "--epochs", "1", "--lr-selection", str(selection), "--out-dir", str(run), cwd=REPO)
    assert proc.rc == 0, proc.stderr
    info = json.loads((run / "train.json").read_text())
    assert info["setting_params"]["lr"] == best
    assert {k: info["lr_selection"][k] for k in ("grid", "losses", "chosen")} == \
        {k: chosen[k] for k in ("grid", "losses", "chosen")}
    # an lr_grid given to train directly is refused with one line: the workflow chooses it
    proc = rd("train", *common[:-8], "--setting", '{"optimizer": "adam", "lr": 0.005, "lr_grid": [0.001, 0.002]}',
              "--out-dir", str(tmp_path / "x"), cwd=REPO)
    assert proc.rc == 2 and proc.stderr.count("\n") == 1 and "lr_grid: chooses the lr" in proc.stderr
    assert "Fix:" in proc.stderr


# --------------------------------------------------------------------------- the config and the workflow
def _config(**changes) -> dict:
    cfg_ = yaml.safe_load((REPO / "config.yaml").read_text())
    for dotted, value in changes.items():
        node = cfg_
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return cfg_


@pytest.mark.parametrize("changes,expected", [
    ({"dataset__validation_fraction": 0.6}, "dataset.validation_fraction: 0.6 is greater than the maximum of 0.5"),
    ({"settings__tuned__lr_grid": [0.001]}, "settings.tuned.lr_grid: [0.001] is too short"),
    ({"settings__tuned__lr_grid": [0.001, -0.1]}, "settings.tuned.lr_grid[1]: -0.1 is less than or equal to"),
    ({"settings__tuned__lr_grid": [0.001, float("nan")]}, "settings.tuned.lr_grid: must be a list of learning rates"),
    ({"settings__tuned__lr_grid": [0.001, 0.002], "dataset__validation_fraction": 0},
     "settings.tuned.lr_grid: the lr is chosen on held-out good images, but dataset.validation_fraction is 0"),
    ({"settings__tuned__lr_grid": [0.001, 0.002], "settings__tuned__lr_select_epochs": 0},
     "settings.tuned.lr_select_epochs: 0 is less than the minimum of 1"),
    ({"settings__tuned__lr_grid": [0.001, 0.002], "settings__tuned__warmup_epochs": 2},
     "settings.tuned.lr_select_epochs: the lr selection runs 1 epoch(s), less than warmup_epochs 2"),
    ({"settings__tuned__lr_select_epochs": 2}, "settings.tuned.lr_select_epochs: set without lr_grid"),
], ids=["fraction", "grid_short", "grid_negative", "grid_nan", "no_held_out", "select_0", "select_lt_warmup",
        "select_alone"])
def test_config_check_refuses_bad_held_out_and_grid_values(changes, expected):
    with pytest.raises(InvalidConfig) as info:
        check_config(_config(**changes), SCHEMA)
    assert expected in str(info.value) and "\nFix: " in str(info.value), str(info.value)


def test_schema_default_of_validation_fraction_is_the_cli_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    sub = schema["properties"]["dataset"]["properties"]["validation_fraction"]
    rule = params.RULES["validation_fraction"]
    assert sub["default"] == params.VALIDATION_FRACTION == 0.1
    assert (sub["minimum"], sub["maximum"]) == (rule.minimum, rule.maximum) == (0, 0.5)


def test_workflow_selects_the_lr_on_the_first_category_and_seed(tmp_path):
    """A real dry run: one lr_select job per grid value for the tuned arm only, on the first
    category and seed; its train jobs (every category and seed) read the gathered JSON."""
    wd = wr.copy_workflow(tmp_path)
    wr.write_config(wd / "grid.yaml", seeds=[3, 4],
                    settings={"baseline": {"optimizer": "adam", "lr": 0.005},
                              "tuned": {"optimizer": "adamw", "lr": 0.001, "lr_grid": [0.0005, 0.001, 0.002]}},
                    arms=["resnet18/baseline", "convnext_pico/tuned"],
                    comparisons=[["resnet18/baseline", "convnext_pico/tuned"]])
    proc = wr.snakemake(wd, "-n", "-p", "--configfile", "grid.yaml")
    text = proc.stdout + proc.stderr
    jobs = wr.dry_run(wd, "--configfile", "grid.yaml")
    counts = wr.counts(jobs)
    assert (counts["lr_select"], counts["lr_gather"], counts["train"]) == (3, 1, 2 * 2 * 2)
    assert {w["lr"] for r, w in jobs if r == "lr_select"} == {"0.0005", "0.001", "0.002"}
    selects = [line for line in text.splitlines() if "python -m rd lr-select" in line]
    assert len(selects) == 3 and all("--category grass " in s and "--seed 3 " in s for s in selects)
    assert all("--validation-fraction 0.1 --data-seed 0" in s and "--select-epochs 1 " in s for s in selects)
    assert all('"lr_grid"' not in s for s in selects)
    trains = [line for line in text.splitlines() if "python -m rd train" in line]
    tuned = [t for t in trains if "--setting-name tuned" in t]
    assert len(tuned) == 4 and all("--lr-selection results/lr/convnext_pico/tuned.json" in t for t in tuned)
    assert not any("--lr-selection" in t for t in trains if "--setting-name baseline" in t)
