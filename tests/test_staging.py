"""The evaluation done by the training process (rd.staging): the same outputs as a separate
`rd evaluate`, published only when options, model and code match, teacher features once per run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rd import staging
from rd.cli import main

def _options(root: Path, failure_cases: int = 4, dataset: str | None = "textures") -> dict:
    return staging.evaluation_options(data_root=root, category="brick", dataset=dataset,
                                      failure_cases=failure_cases, device="cpu")


@pytest.fixture(scope="module")
def staged_run(brick_root, tmp_path_factory):
    """One tiny run trained with its evaluation staged (the state `rd train --stage-evaluation` leaves)."""
    from rd.train import TrainConfig, train

    run = tmp_path_factory.mktemp("staged") / "run"
    cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone="resnet18", dataset="textures",
                      image_size=64, epochs=1, batch_size=16, seed=0, device="cpu", threads=1)
    train(cfg, run, stage_evaluation=True, failure_cases=4)
    return run


def _assert_close(a, b, where: str) -> None:
    """Equal structure, numbers within 1e-6."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, where


def _fresh_copy(staged_run: Path, dest: Path) -> Path:
    shutil.copytree(staged_run, dest)
    return dest


def test_staged_evaluation_equals_separate_evaluate(staged_run, brick_root, tmp_path):
    from rd.evaluate import evaluate_run

    staged = _fresh_copy(staged_run, tmp_path / "staged")
    separate = tmp_path / "separate"
    separate.mkdir()
    shutil.copy2(staged / "model.pt", separate / "model.pt")
    evaluate_run(separate / "model.pt", data_root=str(brick_root), category="brick", out_dir=separate,
                 device="cpu", dataset="textures")
    assert main(["evaluate", "--data-root", str(brick_root), "--dataset", "textures", "--category", "brick",
                 "--model", str(staged / "model.pt"), "--device", "cpu", "--out-dir", str(staged)]) == 0
    assert not (staged / staging.STAGE_DIR).exists()  # published, not evaluated again
    for name in ("metrics.json", "threshold.json", "curves.json"):
        a, b = json.loads((staged / name).read_text()), json.loads((separate / name).read_text())
        a.pop("eval_seconds", None), b.pop("eval_seconds", None)
        _assert_close(a, b, name)
    assert (staged / "scores.csv").read_text() == (separate / "scores.csv").read_text()
    fa, fb = np.load(staged / "failure_cases.npz"), np.load(separate / "failure_cases.npz")
    assert sorted(fa.files) == sorted(fb.files)
    for key in fa.files:
        if fa[key].dtype.kind in "fiub":
            np.testing.assert_allclose(fa[key].astype(float), fb[key].astype(float), atol=1e-6, err_msg=key)
        else:
            assert (fa[key] == fb[key]).all(), key
    # published files are newer than the model (Snakemake's mtime check keeps them)
    assert min((staged / n).stat().st_mtime_ns for n in ("metrics.json", "scores.csv")) >= \
        (staged / "model.pt").stat().st_mtime_ns


def test_other_options_are_evaluated_in_full(staged_run, brick_root, tmp_path):
    run = _fresh_copy(staged_run, tmp_path / "run")
    with pytest.warns(UserWarning, match="other options \\(failure_cases\\)"):
        assert main(["evaluate", "--data-root", str(brick_root), "--dataset", "textures", "--category", "brick",
                     "--model", str(run / "model.pt"), "--device", "cpu", "--failure-cases", "1",
                     "--out-dir", str(run)]) == 0
    assert len(np.load(run / "failure_cases.npz")["kinds"]) == 2  # 1 missed defect + 1 false alarm


def _fake_staged(run: Path, root: Path, **record_options) -> None:
    """A staged evaluation of fake files for a fake model (no torch)."""
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"model bytes")
    stage = staging.stage_dir(run)
    stage.mkdir()
    for name in ("scores.csv", "metrics.json"):
        (stage / name).write_text(f"staged {name}\n")
    staging.write_record(run, files=["scores.csv", "metrics.json"], options=_options(root, **record_options),
                         model_path=run / "model.pt")


def test_publish_moves_the_staged_files(tmp_path):
    run = tmp_path / "run"
    _fake_staged(run, tmp_path)
    (run / "metrics.json").write_text("old\n")
    assert staging.publish(run / "model.pt", run, _options(tmp_path))
    assert (run / "metrics.json").read_text() == "staged metrics.json\n"
    assert (run / "scores.csv").read_text() == "staged scores.csv\n"
    assert not staging.stage_dir(run).exists()
    assert not staging.publish(run / "model.pt", run, _options(tmp_path))  # nothing staged any more


def test_publish_with_evaluates_default_dataset(tmp_path):
    run = tmp_path / "run"
    _fake_staged(run, tmp_path)
    assert staging.publish(run / "model.pt", run, _options(tmp_path, dataset=None))


@pytest.mark.parametrize("change,why", [
    ("options", "other options"),
    ("model", "is not the model it evaluated"),
    ("missing", "scores.csv is missing"),
    ("code", "the evaluation code changed"),
    ("record", "record is unreadable"),
])
def test_publish_refuses_what_does_not_match(tmp_path, monkeypatch, change, why):
    run = tmp_path / "run"
    _fake_staged(run, tmp_path)
    options = _options(tmp_path)
    if change == "options":
        options = _options(tmp_path, failure_cases=3)
    elif change == "model":
        (run / "model.pt").write_bytes(b"another model")
    elif change == "missing":
        (staging.stage_dir(run) / "scores.csv").unlink()
    elif change == "code":
        monkeypatch.setattr(staging, "code_fingerprint", lambda: "other")
    elif change == "record":
        (staging.stage_dir(run) / staging.RECORD).write_text("{not json")
    with pytest.warns(UserWarning, match=why):
        assert not staging.publish(run / "model.pt", run, options)
    assert not (run / "metrics.json").exists()


def test_publish_only_into_the_models_folder(tmp_path):
    run = tmp_path / "run"
    _fake_staged(run, tmp_path)
    assert not staging.publish(run / "model.pt", tmp_path / "elsewhere", _options(tmp_path))
    assert staging.stage_dir(run).is_dir()


def test_retraining_discards_an_earlier_staged_evaluation(staged_run, brick_root, tmp_path):
    from rd.train import TrainConfig, train

    run = _fresh_copy(staged_run, tmp_path / "run")
    marker = staging.stage_dir(run) / "from-the-earlier-model"
    marker.write_text("x")
    cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone="resnet18", dataset="textures",
                      image_size=64, epochs=1, batch_size=16, seed=1, device="cpu", threads=1)
    train(cfg, run)  # no staging this time: nothing of the old model's evaluation may stay
    assert not staging.stage_dir(run).exists()


def test_teacher_sees_each_image_once_per_run(brick_root, tmp_path, monkeypatch):
    """Training images once (the feature cache), test images once (history columns every epoch
    and the staged evaluation share them)."""
    from rd.data import load_split
    from rd.method.teacher import Teacher
    from rd.train import TrainConfig, train

    seen = []
    forward = Teacher.forward

    def counting(self, x):
        seen.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(Teacher, "forward", counting)
    cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone="resnet18", dataset="textures",
                      image_size=64, epochs=2, batch_size=16, seed=0, device="cpu", threads=1, eval_every=1)
    train(cfg, tmp_path / "run", stage_evaluation=True)
    n_train = len(load_split(brick_root, "brick", "train", 64, dataset="textures")["labels"])
    n_test = len(load_split(brick_root, "brick", "test", 64, dataset="textures")["labels"])
    assert sum(seen) == n_train + n_test
    assert (staging.stage_dir(tmp_path / "run") / staging.RECORD).is_file()
