"""`python -m rd export`: one ONNX file whose maps and scores equal PyTorch's (ResNet and ConvNeXt
teachers, batch 1 and 3 through the same file), the torch Gaussian blur equal to scipy's, and
onnx kept out of the rest of the package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rd.method.anomaly_map import gaussian_sigma, smooth
from rd.errors import RDError
from rd.use.export import GaussianBlur, export_onnx, onnx_session, reflect_indices

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from rd.data import prepare_category

    root = tmp_path_factory.mktemp("export_data")
    prepare_category("textures", root, "brick", seed=0,
                     generate_options={"n_train": 8, "n_test_good": 2, "n_per_defect": 1, "size": 64})
    return root


def _run(root: Path, out: Path, backbone: str) -> Path:
    from rd.evaluate import evaluate_run
    from rd.run import TrainConfig
    from rd.train import train

    cfg = TrainConfig(data_root=str(root), category="brick", backbone=backbone, image_size=64, epochs=1,
                      batch_size=8, seed=0, device="cpu", threads=1)
    train(cfg, out)
    evaluate_run(out / "model.pt", data_root=str(root), category="brick", out_dir=out, device="cpu")
    return out


@pytest.mark.parametrize("size,sigma", [(64, None), (32, None), (8, 4.0), (5, 1.3)])
def test_torch_blur_equals_scipy(size, sigma):
    sigma = gaussian_sigma(size) if sigma is None else sigma
    maps = np.random.default_rng(0).random((3, size, size), dtype=np.float32) * 3
    got = GaussianBlur(sigma, size)(torch.from_numpy(maps).unsqueeze(1))[:, 0].numpy()
    np.testing.assert_allclose(got, smooth(maps, sigma), rtol=0, atol=2e-6)


def test_reflect_indices_match_numpy_symmetric():
    for size, radius in [(6, 2), (6, 6), (4, 1)]:
        want = np.pad(np.arange(size), radius, mode="symmetric")
        assert reflect_indices(size, radius).tolist() == want.tolist()
    assert reflect_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]  # beyond one period (-5..6)


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_pico"])
def test_onnx_equals_pytorch(backbone, data_root, tmp_path):
    from rd.data import load_split
    from rd.method.inference import image_scores, predict
    from rd.run import load_model

    run = _run(data_root, tmp_path / "run", backbone)
    meta = export_onnx(run, tmp_path / "m.onnx")
    written = json.loads((tmp_path / "m.json").read_text())
    assert written == meta
    assert {"image_size", "mean", "std", "threshold", "threshold_source", "backbone", "arm", "seed", "opset"} <= set(meta)
    assert meta["image_size"] == 64 and meta["backbone"] == backbone and meta["arm"] == f"{backbone}/baseline"
    assert meta["threshold"] == json.loads((run / "threshold.json").read_text())["value"]
    assert meta["threshold_source"].startswith("good:")

    images = load_split(data_root, "brick", "test", 64)["images"][:4]
    model, _ = load_model(run / "model.pt")
    want_maps = predict(model, images, 64, "cpu")
    want_scores = image_scores(want_maps)
    session = onnx_session(tmp_path / "m.onnx", threads=1)
    for batch in (images[:1], images[1:4]):  # batch 1 and 3 through the same file
        maps, scores = session.run(["anomaly_map", "score"], {"image": batch.numpy()})
        i = 0 if len(batch) == 1 else 1
        assert maps.shape == (len(batch), 64, 64) and scores.shape == (len(batch),)
        np.testing.assert_allclose(maps, want_maps[i:i + len(batch)], rtol=0, atol=1e-4)
        np.testing.assert_allclose(scores, want_scores[i:i + len(batch)], rtol=0, atol=1e-4)


def test_missing_onnx_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(RDError) as err:
        export_onnx(tmp_path, tmp_path / "m.onnx")
    assert "onnxruntime is not installed" in str(err.value) and 'pip install -e ".[export]"' in str(err.value)


def test_bad_output_name(tmp_path):
    with pytest.raises(RDError, match="does not end in .onnx"):
        export_onnx(tmp_path, tmp_path / "m.pt")


def test_onnx_is_imported_only_by_export():
    sources = [p for p in (REPO / "rd").rglob("*.py") if p.name != "export.py"]
    offenders = [str(p) for p in sources if "import onnx" in p.read_text() or "from onnx" in p.read_text()]
    assert not offenders
    code = ("import sys, rd.cli, rd.use.predict, rd.evaluate, rd.train, rd.use.thresholds, rd.use.figures; "
            "rd.cli.build_parser(); print(sorted(m for m in sys.modules if m.startswith('onnx')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
