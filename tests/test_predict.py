"""`python -m rd predict`: a run's own test images score as in evaluate, thresholds, bad input,
and the optional `predict` pipeline target."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rd.cli import main
from rd.errors import RDError
from rd.use.predict import SkippedFileWarning, collect_images, figure_names, predict_images
from rd.use.figures import anomaly_panels_png
from rd.run import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def tiny_run(root: Path, out: Path, backbone: str = "resnet18", category: str = "brick") -> Path:
    """A trained + evaluated run of a tiny embedded category (64 px, 1 epoch): seconds on CPU."""
    from rd.data import prepare_category
    from rd.evaluate import evaluate_run
    from rd.train import train

    if not (root / category).is_dir():
        prepare_category("textures", root, category, seed=0,
                         generate_options={"n_train": 12, "n_test_good": 4, "n_per_defect": 2, "size": 64})
    cfg = TrainConfig(data_root=str(root), category=category, backbone=backbone, image_size=64, epochs=1,
                      batch_size=8, seed=0, device="cpu", threads=1)
    train(cfg, out)
    evaluate_run(out / "model.pt", data_root=str(root), category=category, out_dir=out, device="cpu")
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("predict")
    return tiny_run(base / "data", base / "run")


def _predict(run: Path, images, out: Path, **kw) -> pd.DataFrame:
    kw.setdefault("device", "cpu")
    predict_images(run, images, out, **kw)
    return pd.read_csv(out / "predictions.csv", keep_default_na=False)


def test_test_images_score_as_in_evaluate(run, tmp_path):
    test_dir = run.parent / "data" / "brick" / "test"
    frame = _predict(run, [test_dir], tmp_path / "p", batch_size=5)  # other batch size than evaluate's 8
    want = pd.read_csv(run / "scores.csv")
    got = frame.set_index(frame.path.map(lambda p: str(Path(p).resolve())))
    want = want.set_index(want.path.map(lambda p: str(Path(p).resolve())))
    assert set(got.index) == set(want.index) and len(got) == 12
    np.testing.assert_allclose(got.loc[want.index, "score"].astype(float), want.score, rtol=0, atol=1e-6)
    thr = json.loads((run / "threshold.json").read_text())
    assert (got.threshold == thr["value"]).all()
    assert (got.decision == np.where(got.score.astype(float) >= thr["value"], "anomalous", "good")).all()
    assert got.threshold_source.str.startswith("good: 0.99 score quantile of train/good (n=12, seen in training").all()
    assert (got.reason == "").all()
    # one three-panel PNG per image
    from PIL import Image

    figures = sorted((tmp_path / "p" / "figures").iterdir())
    assert len(figures) == 12 and {f"figures/{p.name}" for p in figures} == set(got.figure)
    with Image.open(figures[0]) as im:
        assert im.size == (3 * 128 + 2 * 3, 128)


def test_good_threshold_is_the_train_quantile(run, tmp_path):
    frame = _predict(run, [run.parent / "data" / "brick" / "train" / "good"], tmp_path / "p", figures=False)
    thr = json.loads((run / "threshold.json").read_text())
    assert thr["n_images"] == len(frame) == 12 and thr["quantile"] == 0.99
    assert "seen in training" in thr["source"] and thr["threshold_source"] == "training"
    np.testing.assert_allclose(np.quantile(frame.score.astype(float), 0.99), thr["value"], rtol=0, atol=1e-6)
    assert not (tmp_path / "p" / "figures").exists()


def test_threshold_choices(run, tmp_path):
    test_dir = run.parent / "data" / "brick" / "test" / "good"
    f1 = json.loads((run / "metrics.json").read_text())["image_f1max_threshold"]
    frame = _predict(run, [test_dir], tmp_path / "a", threshold="f1max", figures=False)
    assert (frame.threshold == f1).all() and frame.threshold_source.str.contains("optimistic").all()
    frame = _predict(run, [test_dir], tmp_path / "b", threshold="-1", figures=False)
    assert (frame.threshold == -1).all() and (frame.decision == "anomalous").all()
    assert (frame.threshold_source == "user").all()
    with pytest.raises(RDError, match="Unknown threshold 'best'"):
        predict_images(run, [test_dir], tmp_path / "c", threshold="best")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy2(run / "model.pt", bare / "model.pt")
    with pytest.raises(RDError, match="threshold.json does not exist.*rerun `python -m rd evaluate`"):
        predict_images(bare / "model.pt", [test_dir], tmp_path / "d")


def test_non_images_are_skipped_and_listed(run, tmp_path, capsys):
    src = run.parent / "data" / "brick" / "test" / "good"
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    shutil.copy2(src / "000.png", imgs / "a.png")
    shutil.copy2(src / "001.png", imgs / "sub" / "b.png")
    (imgs / "notes.md").write_text("not an image")
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{imgs / 'a.png'}\n\n{tmp_path / 'missing.png'}\n")
    with pytest.warns(SkippedFileWarning) as record:
        code = main(["predict", str(run), str(imgs), str(listing), "--out", str(tmp_path / "p"), "--device", "cpu"])
    assert code == 0
    warned = [str(w.message) for w in record if w.category is SkippedFileWarning]
    assert len(warned) == 3 and all(m.startswith("skipped ") and "\n" not in m for m in warned), warned
    assert "predict: 2 image(s) scored" in capsys.readouterr().err
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv", keep_default_na=False)
    by_name = {Path(p).name: row for p, row in zip(frame.path, frame.to_dict("records"))}
    assert set(by_name) == {"a.png", "b.png", "notes.md", "broken.png", "missing.png"}  # a.png once
    assert by_name["notes.md"]["reason"].startswith("not an image file")
    assert by_name["broken.png"]["reason"].startswith("cannot be read as an image (")
    assert str(imgs) not in by_name["broken.png"]["reason"]
    assert by_name["missing.png"]["reason"] == "does not exist"
    assert {by_name[n]["decision"] for n in ("notes.md", "broken.png", "missing.png")} == {"skipped"}
    assert by_name["a.png"]["score"] != "" and by_name["b.png"]["figure"] == "figures/sub__b.png"


@pytest.mark.parametrize("case", ["no_model", "empty_folder", "only_non_images", "format", "extra_key",
                                  "missing_key"])
def test_bad_input_is_one_line(case, run, tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy2(run.parent / "data" / "brick" / "test" / "good" / "000.png", images / "x.png")
    model = run
    if case == "no_model":
        model = tmp_path / "not_a_run"
        model.mkdir()
        needle = "has no model.pt"
    elif case in ("empty_folder", "only_non_images"):
        images = tmp_path / "empty"
        images.mkdir()
        if case == "only_non_images":
            (images / "readme.md").write_text("x")
        needle = "No images to score"
    else:
        ckpt = torch.load(run / "model.pt", weights_only=True)
        if case == "format":
            ckpt["format"] = "rd-model/0"
            needle = "format 'rd-model/0'; this code reads 'rd-model/1'"
        elif case == "extra_key":
            ckpt["train_config"]["augment"] = True
            needle = "keys unknown here: augment"
        else:  # a key without a default (keys added later take their defaults)
            del ckpt["train_config"]["backbone"]
            needle = "keys missing: backbone"
        model = tmp_path / "old" / "model.pt"
        model.parent.mkdir()
        torch.save(ckpt, model)
        shutil.copy2(run / "threshold.json", model.parent / "threshold.json")
    out = tmp_path / "out"
    code = main(["predict", str(model), str(images), "--out", str(out), "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and needle in err[0] and "Fix:" in err[0], err
    assert not (out / "predictions.csv").exists()


def test_inputs_are_resized_to_the_runs_size(run, tmp_path):
    """A 200x150 image is scored at the run's 64 px, like training: same score as its 64-px resize."""
    from PIL import Image

    src = run.parent / "data" / "brick" / "test" / "good" / "000.png"
    with Image.open(src) as im:
        im.convert("RGB").resize((200, 150)).save(tmp_path / "big.png")
    frame = _predict(run, [tmp_path / "big.png"], tmp_path / "p")
    assert frame.decision[0] in ("good", "anomalous")
    with Image.open(tmp_path / "p" / frame.figure[0]) as fig:
        assert fig.size[1] == 128  # panels at max(run size, 128)


def test_collect_and_names(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/1.png", "a/b/1.png", "a/b/2.JPG", "a/.hidden.png"):
        (tmp_path / rel).write_bytes(b"")
    entries = collect_images([tmp_path / "a", tmp_path / "a" / "1.png"])
    assert [(e.path.relative_to(tmp_path).as_posix(), e.reason) for e in entries] == [
        ("a/.hidden.png", "hidden file"), ("a/1.png", ""), ("a/b/1.png", ""), ("a/b/2.JPG", "")]
    assert figure_names([e.path for e in entries if not e.reason]) == ["1.png", "b__1.png", "b__2.JPG.png"]


def test_panels_outline_the_thresholded_region():
    from io import BytesIO

    from PIL import Image

    img = np.full((32, 32, 3), 100, np.uint8)
    amap = np.zeros((32, 32), np.float32)
    amap[8:16, 8:16] = 1.0
    png = anomaly_panels_png(img, amap, 0.5, size=32)
    arr = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    overlay = arr[:, 2 * (32 + 3):]
    white = np.all(overlay == 255, axis=2)
    assert white[8, 8:16].all() and white[8:16, 8].all() and not white[12, 12] and not white[2, 2]
    below = np.asarray(Image.open(BytesIO(anomaly_panels_png(img, amap, 2.0, size=32))).convert("RGB"))
    assert not np.all(below[:, 2 * (32 + 3):] == 255, axis=2).any()  # nothing reaches the threshold


# --------------------------------------------------------------------------- pipeline target
def _dry_run(wd: Path, *config: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *config], cwd=wd,
                          capture_output=True, text=True, timeout=300)
    return proc.stdout + proc.stderr


def test_predict_target_only_when_enabled(tmp_path):
    for name in ("Snakefile", "config.yaml", "environment.yml", "workflow"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, tmp_path / name)
    (tmp_path / "mine").mkdir()
    off = _dry_run(tmp_path)
    assert "rule evaluate:" in off and "rule predict:" not in off
    on = _dry_run(tmp_path, "--config", "predict={arm: convnext_pico/tuned, category: grass, seed: 1, images: mine}")
    assert on.count("rule predict:") == 1, on[-3000:]
    assert "results/predict/textures/grass/convnext_pico/tuned/seed1/predictions.csv" in on
    bad = _dry_run(tmp_path, "--config", "predict={arm: resnet18/tuned, category: grass, images: [nope]}")
    assert "predict.arm: 'resnet18/tuned' is not one of the arms" in bad
    assert "predict.images: nope does not exist" in bad and "rule predict:" not in bad
