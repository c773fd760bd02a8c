"""One short training + evaluation on CUDA: fp32 vs bf16 autocast + channels_last.

Marker ``gpu``; skipped without CUDA. On the generated ``textures/brick`` category (100 train,
60 test images, 128 px) it trains RD with the ImageNet efficientnet_lite0 teacher (shipped
offline by a pip package, so the metrics are well above chance and comparable; paper recipe:
Adam 0.005, betas 0.5/0.999, 10 epochs x 7 steps) twice with the same seed -- once in fp32,
once with ``bf16=True`` (student under ``torch.autocast(cuda, bfloat16)``) -- evaluates both
in fp32 and checks that they agree:

* final training loss: relative difference <= 15 %;
* image AUROC: absolute difference <= 0.05; pixel AUROC: <= 0.03.

Why those numbers: bf16 keeps 8 mantissa bits (relative rounding ~4e-3), and 70 Adam steps
at lr 0.005 amplify such differences into visibly different weights, so bit-level agreement
is not expected; what must hold is that the run converges to a model of the same quality.
60 test images make one misranked pair move image AUROC by ~1/800, so 0.05 means "same
quality", not "noise-free". Pixel AUROC pools ~1M pixels and is steadier, hence tighter.

rd.train puts tensors and the model in channels_last on every CUDA run; when TrainConfig
has a ``channels_last`` field the fp32 reference turns it off, so the comparison is exactly
"fp32 NCHW" vs "bf16 autocast + channels_last". Step times (ms per optimisation step,
first epoch and steady state) are printed for both.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from rd.params import BASELINE

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

BACKBONE, WEIGHTS = "efficientnet_lite0", "imagenet"  # the offline ImageNet teacher: metrics mean something
EPOCHS = 10
IMAGE_SIZE = 128
LOSS_RTOL = 0.15
IMAGE_AUROC_ATOL = 0.05
PIXEL_AUROC_ATOL = 0.03

@pytest.fixture(scope="module")
def brick(tmp_path_factory) -> Path:
    from rd.data import prepare_category

    root = tmp_path_factory.mktemp("gpu-data") / "textures"
    prepare_category("textures", root, "brick", seed=0, manifest_path=root.parent / "brick.json")
    return root


def _run(root: Path, out: Path, *, bf16: bool) -> dict:
    from rd.evaluate import evaluate_run
    from rd.train import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extra = {"channels_last": bf16} if "channels_last" in fields else {}
    cfg = TrainConfig(data_root=str(root), category="brick", backbone=BACKBONE, weights=WEIGHTS,
                      setting_name="baseline", setting=dict(BASELINE), image_size=IMAGE_SIZE, epochs=EPOCHS,
                      batch_size=16, seed=0, device="cuda", threads=1, bf16=bf16, eval_every=0,
                      feature_cache=True, **extra)
    torch.cuda.synchronize()
    train(cfg, out)
    evaluate_run(out / "model.pt", data_root=str(root), category="brick", out_dir=out,
                           device="cuda", threads=1, failure_cases=2)
    saved_info = json.loads((out / "train.json").read_text())
    saved_metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    steps_per_epoch = saved_info["steps"] // EPOCHS
    return {
        "info": saved_info, "metrics": saved_metrics,
        "channels_last": bf16 if extra else True,
        "ms_first": 1000 * history["seconds"].iloc[0] / steps_per_epoch,
        "ms_steady": 1000 * history["seconds"].iloc[1:].median() / steps_per_epoch,
    }


def test_fp32_and_bf16_channels_last_agree(brick, tmp_path, monkeypatch):
    monkeypatch.setenv("RD_GPU_LOCK_DIR", str(tmp_path / "gpu-locks"))  # not the repo's .snakemake/
    torch.backends.cudnn.benchmark = False
    runs = {name: _run(brick, tmp_path / name, bf16=(name == "bf16")) for name in ("fp32", "bf16")}

    print(f"\nGPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"{BACKBONE}-RD {IMAGE_SIZE}px batch 16, {EPOCHS} epochs x {runs['fp32']['info']['steps'] // EPOCHS} steps")
    for name, r in runs.items():
        m, i = r["metrics"], r["info"]
        print(f"  {name:>4} (channels_last={r['channels_last']}): step {r['ms_first']:.1f} ms (epoch 1), "
              f"{r['ms_steady']:.1f} ms (steady); train {i['train_seconds']:.1f}s, peak {i['peak_mem_mb']:.0f} MB; "
              f"loss {i['final_loss']:.4f}; image AUROC {m['image_auroc']:.4f}; pixel AUROC {m['pixel_auroc']:.4f}; "
              f"AUPRO {m['aupro']:.4f}; eval {m['eval_seconds']:.1f}s")

    fp32, bf16 = runs["fp32"], runs["bf16"]
    for r in (fp32, bf16):
        assert r["info"]["device"].startswith("cuda"), r["info"]["device"]
        for key in ("final_loss",):
            assert math.isfinite(r["info"][key])
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            assert 0.0 <= r["metrics"][key] <= 1.0
    l32, l16 = fp32["info"]["final_loss"], bf16["info"]["final_loss"]
    assert abs(l16 - l32) <= LOSS_RTOL * abs(l32), (l32, l16)
    d_img = abs(bf16["metrics"]["image_auroc"] - fp32["metrics"]["image_auroc"])
    d_pix = abs(bf16["metrics"]["pixel_auroc"] - fp32["metrics"]["pixel_auroc"])
    print(f"  |d image AUROC| = {d_img:.4f} (tol {IMAGE_AUROC_ATOL}), |d pixel AUROC| = {d_pix:.4f} "
          f"(tol {PIXEL_AUROC_ATOL}), loss rel diff = {abs(l16 - l32) / abs(l32):.3f} (tol {LOSS_RTOL})")
    assert d_img <= IMAGE_AUROC_ATOL
    assert d_pix <= PIXEL_AUROC_ATOL
