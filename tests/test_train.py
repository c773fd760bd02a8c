"""Training: determinism, resume after kill -9, feature cache, NaN guard, and the method itself."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rd.errors import RDError
from rd.evaluate import evaluate_run
from rd.train import TrainConfig, batches, epoch_order, train

REPO = Path(__file__).resolve().parents[1]


def small_cfg(root: Path, **kw) -> TrainConfig:
    base = dict(data_root=str(root), category="brick", backbone="resnet18", image_size=64, epochs=2,
                batch_size=16, seed=0, device="cpu", threads=1)
    return TrainConfig(**{**base, **kw})


def metrics_of(run: Path, root: Path) -> dict:
    evaluate_run(run / "model.pt", data_root=str(root), category="brick", out_dir=run, device="cpu")
    return json.loads((run / "metrics.json").read_text())


SCALARS = ("image_auroc", "pixel_auroc", "aupro", "image_ap", "pixel_ap", "image_f1max", "pixel_f1max", "iou")


def test_same_seed_same_metrics_other_seed_differs(brick_root, tmp_path):
    a = metrics_of(_trained(small_cfg(brick_root), tmp_path / "a"), brick_root)
    b = metrics_of(_trained(small_cfg(brick_root), tmp_path / "b"), brick_root)
    c = metrics_of(_trained(small_cfg(brick_root, seed=1), tmp_path / "c"), brick_root)
    assert {k: a[k] for k in SCALARS} == {k: b[k] for k in SCALARS}
    assert (tmp_path / "a" / "scores.csv").read_bytes() == (tmp_path / "b" / "scores.csv").read_bytes()
    assert {k: a[k] for k in SCALARS} != {k: c[k] for k in SCALARS}


def _trained(cfg: TrainConfig, out: Path) -> Path:
    train(cfg, out)
    return out


def test_outputs_and_history(brick_root, tmp_path):
    summary = train(small_cfg(brick_root, eval_every=1), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "history.csv", "train.json"}
    import pandas as pd

    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.epoch) == [1, 2]
    assert hist.loss.notna().all() and (hist.loss > 0).all()
    assert hist.image_auroc.between(0, 1).all()
    assert summary["steps"] == 2 * 7  # 100 images, batch 16 -> 6 full batches + one of 4
    assert summary["params"]["student"] == 15_383_168
    assert summary["feature_cache"] is True


def test_feature_cache_does_not_change_first_step_loss(brick_root):
    """The cached teacher features equal per-step teacher features: same loss on step one."""
    from rd.data import load_split
    from rd.method.loss import cosine_distillation_loss
    from rd.method import build_rd
    from rd.run import seed_everything
    from rd.train import teacher_features

    images = load_split(brick_root, "brick", "train", 64)["images"]
    seed_everything(0)
    model = build_rd("resnet18").train()
    idx = batches(epoch_order(len(images), 0, 1), 16)[0]
    cached = teacher_features(model, images, torch.device("cpu"), 16, channels_last=False)
    with torch.no_grad():
        from_cache = cosine_distillation_loss([f[idx] for f in cached], model.student([f[idx] for f in cached]))
        direct_feats = model.teacher(images[idx])
        direct = cosine_distillation_loss(direct_feats, model.student(direct_feats))
    torch.testing.assert_close(from_cache, direct, rtol=1e-6, atol=1e-7)


def test_cache_and_no_cache_train_alike(brick_root, tmp_path):
    a = train(small_cfg(brick_root, epochs=1), tmp_path / "a")
    b = train(small_cfg(brick_root, epochs=1, feature_cache=False), tmp_path / "b")
    assert b["feature_cache"] is False
    assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-4)


def test_nan_loss_stops_without_model(brick_root, tmp_path):
    cfg = small_cfg(brick_root, setting={"optimizer": "sgd", "lr": 1e38}, epochs=2)
    with pytest.raises(RDError, match="loss became (nan|inf)"):
        train(cfg, tmp_path)
    assert not (tmp_path / "model.pt").exists()


def test_data_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 2))
    assert not torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 3))
    assert [len(b) for b in batches(torch.arange(33), 16)] == [16, 16]  # trailing batch of one dropped


def _cli_train(root: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--data-root", str(root), "--category", "brick", "--backbone", "resnet18", "--image-size", "64",
            "--epochs", str(epochs), "--seed", "0", "--device", "cpu", "--threads", "1", "--checkpoint-every", "0",
            "--out-dir", str(out)]


def test_kill_9_then_resume_equals_uninterrupted(brick_root, tmp_path):
    """SIGKILL (no cleanup code runs) as "epoch 2/4" is printed, then the same command: the
    checkpoint of epoch 1 is resumed and the result equals an uninterrupted run's, bit for bit."""
    from tests.helpers.reliability import Trigger, rd, rd_until

    epochs = 4
    full, broken = tmp_path / "full", tmp_path / "broken"
    assert rd(*_cli_train(brick_root, full, epochs), cwd=REPO).rc == 0
    killed = rd_until(Trigger(signal.SIGKILL, text=f"epoch 2/{epochs}"), *_cli_train(brick_root, broken, epochs),
                      cwd=REPO)
    assert killed.rc == -signal.SIGKILL, killed.stderr
    assert (broken / "checkpoint.pt").exists() and not (broken / "model.pt").exists()
    resumed = rd(*_cli_train(brick_root, broken, epochs), cwd=REPO)
    assert resumed.rc == 0, resumed.stderr
    assert f"resuming from {broken / 'checkpoint.pt'} after epoch 1" in resumed.stderr, resumed.stderr
    assert "epoch 1/" not in resumed.stderr  # finished epochs are not redone
    assert not (broken / "checkpoint.pt").exists()
    import pandas as pd

    cols = ["epoch", "loss", "lr"]
    assert pd.read_csv(full / "history.csv")[cols].equals(pd.read_csv(broken / "history.csv")[cols])
    a, b = torch.load(full / "model.pt", weights_only=True), torch.load(broken / "model.pt", weights_only=True)
    for key in a["student"]:
        assert torch.equal(a["student"][key], b["student"][key]), key
    assert {k: v for k, v in metrics_of(full, brick_root).items() if k in SCALARS} == \
           {k: v for k, v in metrics_of(broken, brick_root).items() if k in SCALARS}


def test_checkpoint_interval_and_resume_from_it(brick_root, tmp_path, monkeypatch, capsys):
    """checkpoint_every=0 writes the checkpoint after every epoch but the last; a large interval
    writes none in a short run and changes no number; resuming from the epoch-1 checkpoint
    gives the uninterrupted run's history and weights exactly."""
    import shutil

    import pandas as pd

    from rd import files
    from rd import train as train_module

    saved: list[int] = []
    real_save = files.save_torch

    def spy(path, obj):
        real_save(path, obj)
        if Path(path).name == "checkpoint.pt":
            saved.append(obj["epoch"])
            shutil.copy2(path, tmp_path / f"kept-{obj['epoch']}.pt")

    monkeypatch.setattr(train_module.files, "save_torch", spy)
    cfg = small_cfg(brick_root, epochs=3)
    train(cfg, tmp_path / "every", checkpoint_every=0)
    assert saved == [1, 2]          # never after the last epoch
    saved.clear()
    train(cfg, tmp_path / "rarely", checkpoint_every=3600)
    assert saved == []
    (tmp_path / "resumed").mkdir()
    shutil.copy2(tmp_path / "kept-1.pt", tmp_path / "resumed" / "checkpoint.pt")
    capsys.readouterr()
    train(cfg, tmp_path / "resumed", checkpoint_every=3600)
    err = capsys.readouterr().err
    assert "resuming from" in err and "epoch 1/3" not in err, err   # epoch 1 came from the checkpoint
    cols = ["epoch", "loss", "lr"]
    every = pd.read_csv(tmp_path / "every" / "history.csv")[cols]
    for other in ("rarely", "resumed"):
        assert every.equals(pd.read_csv(tmp_path / other / "history.csv")[cols]), other
        a = torch.load(tmp_path / "every" / "model.pt", weights_only=True)["student"]
        b = torch.load(tmp_path / other / "model.pt", weights_only=True)["student"]
        assert all(torch.equal(a[k], b[k]) for k in a), other
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()


def test_changed_config_ignores_foreign_checkpoint(brick_root, tmp_path, capsys):
    from rd import files

    files.save_torch(tmp_path / "checkpoint.pt", {"identity": "someone-else", "epoch": 1})
    train(small_cfg(brick_root, epochs=1), tmp_path)
    assert "different configuration" in capsys.readouterr().err


def test_method_works_with_imagenet_teacher(brick_root, tmp_path):
    """The guard of the whole method: a real ImageNet teacher separates defects; a random one less so.

    EfficientNet-Lite0 with the offline ImageNet weights, brick at 128 px, a short baseline run.
    """
    cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone="efficientnet_lite0",
                      weights="imagenet", image_size=128, epochs=4, seed=0, device="cpu", threads=2)
    good = metrics_of(_trained(cfg, tmp_path / "imagenet"), brick_root)
    rand = metrics_of(_trained(replace(cfg, weights="none"), tmp_path / "random"), brick_root)
    assert good["image_auroc"] >= 0.9 and good["pixel_auroc"] >= 0.9, good
    assert rand["image_auroc"] < good["image_auroc"] - 0.1 or rand["pixel_auroc"] < good["pixel_auroc"] - 0.1, (good, rand)
