"""Export a trained run as one ONNX file: ``python -m rd export RUN --out FILE.onnx``.

The file holds the whole inference graph -- teacher, bottleneck, decoder, the anomaly map
(1 - cosine per stage, bilinear upsampling, sum, Gaussian blur) and the image score (the map's
maximum) -- so a deployment needs only onnxruntime. Input ``image``: (batch, 3, S, S) float32,
RGB already resized to S = the run's image_size and normalised with the ImageNet mean/std
(both recorded in ``FILE.json``). Outputs ``anomaly_map`` (batch, S, S) and ``score`` (batch,).
The batch axis is dynamic.

The Gaussian blur of :mod:`rd.method.anomaly_map` is scipy's ``gaussian_filter`` (reflect mode,
truncate 4), which ONNX cannot express; :class:`GaussianBlur` computes the same filter as two
fixed 1-D convolutions over a symmetrically padded map (padding by a fixed gather, so maps
smaller than the kernel are handled as scipy does). After writing, the file is run with
onnxruntime on a test batch and compared with PyTorch's maps (the ones ``evaluate`` and
``predict`` compute): a difference above 1e-4 is an error, not a silent export.

onnx and onnxruntime are optional (``pip install -e .[export]``) and imported only here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rd import files
from rd.errors import RDError
from rd.method import RD
from rd.method.anomaly_map import gaussian_sigma, raw_anomaly_map

if TYPE_CHECKING:
    from rd.run import TrainConfig

INPUT, OUTPUTS = "image", ("anomaly_map", "score")
TOLERANCE = 1e-4
DEFAULT_OPSET = 17


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise RDError(f"ONNX export needs the onnx and onnxruntime packages ({exc.name} is not installed).",
                      'pip install -e ".[export]"') from exc
    return onnx, onnxruntime


def reflect_indices(size: int, radius: int) -> np.ndarray:
    """Source index of every position of a ``size``-long axis padded by ``radius`` on each side,
    extended as scipy's ``mode='reflect'`` (d c b a | a b c d | d c b a), repeating as needed."""
    j = np.arange(-radius, size + radius) % (2 * size)
    return np.where(j < size, j, 2 * size - 1 - j).astype(np.int64)


class GaussianBlur(nn.Module):
    """scipy.ndimage.gaussian_filter(sigma, mode='reflect', truncate=4.0) on (N, 1, H, W) maps."""

    def __init__(self, sigma: float, size: int, truncate: float = 4.0) -> None:
        super().__init__()
        radius = int(truncate * float(sigma) + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        w = np.exp(-0.5 * (x / float(sigma)) ** 2)
        w /= w.sum()
        kernel = torch.from_numpy(w.astype(np.float32))
        self.register_buffer("kernel_h", kernel.view(1, 1, -1, 1))
        self.register_buffer("kernel_w", kernel.view(1, 1, 1, -1))
        self.register_buffer("index", torch.from_numpy(reflect_indices(size, radius)))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # scipy filters axis 0 (rows) first, then axis 1
        m = torch.nn.functional.conv2d(maps.index_select(2, self.index), self.kernel_h)
        return torch.nn.functional.conv2d(m.index_select(3, self.index), self.kernel_w)


class AnomalyGraph(nn.Module):
    """RD network + anomaly map + image score in one module: what the ONNX file computes."""

    def __init__(self, model: RD, image_size: int) -> None:
        super().__init__()
        self.model = model.eval()
        self.image_size = int(image_size)
        self.blur = GaussianBlur(gaussian_sigma(self.image_size), self.image_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher, student = self.model(x)
        raw = raw_anomaly_map(teacher, student, self.image_size)
        maps = self.blur(raw.unsqueeze(1))[:, 0]
        return maps, maps.flatten(1).amax(dim=1)


def _check_out(out: Path) -> Path:
    if out.suffix.lower() != ".onnx":
        raise RDError(f"Output {out} does not end in .onnx.", "pass --out FILE.onnx (FILE.json is written beside it).")
    files.ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    return out


def onnx_session(path: str | os.PathLike, threads: int | None = None, spin: bool = True):
    """An onnxruntime CPU session for an exported file (``threads`` intra-op threads).

    ``spin=False`` stops idle worker threads from busy-waiting after a run, so they do not take
    the CPU from other work in the process (the benchmark interleaves torch and onnxruntime)."""
    _, ort = _require_onnx()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_graph(graph: AnomalyGraph, out: str | os.PathLike, opset: int = DEFAULT_OPSET) -> float:
    """Write ``graph`` as ONNX (dynamic batch) atomically; return the max |ORT - PyTorch| on a test batch."""
    onnx, _ = _require_onnx()
    out = Path(out)
    size = graph.image_size
    g = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, size, size, generator=g)
    with files.atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices: the check below is what counts
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT], output_names=list(OUTPUTS), do_constant_folding=True,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUTS[0]: {0: "batch"}, OUTPUTS[1]: {0: "batch"}})
        onnx.checker.check_model(str(tmp))
        check = torch.randn(3, 3, size, size, generator=g)
        with torch.no_grad():
            want_maps, want_scores = graph(check)
        got_maps, got_scores = onnx_session(tmp).run(list(OUTPUTS), {INPUT: check.numpy()})
        diff = max(float(np.abs(got_maps - want_maps.numpy()).max()), float(np.abs(got_scores - want_scores.numpy()).max()))
        if not diff <= TOLERANCE:   # NaN included
            raise RDError(f"The exported graph differs from PyTorch by {diff:.3g} (> {TOLERANCE}); "
                          "nothing was written.",
                          "export with the torch/onnx/onnxruntime versions of pyproject.toml, or report the run "
                          "and the versions as a bug.")
    return diff


def export_onnx(run: str | os.PathLike, out: str | os.PathLike, *, threshold: str | float = "good",
                opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export a run's model.pt to ``out`` (.onnx) and write ``out`` with .json: preprocessing,
    threshold and provenance, everything a deployment needs besides the file itself."""
    from rd.use.predict import resolve_run
    from rd.run import load_model
    from rd.use.thresholds import resolve_threshold

    _require_onnx()
    out = _check_out(Path(out))
    # left by a killed earlier export (kill -9, power loss): never kept beside the new pair
    stale = files.clear_stale_temporaries(out.parent, (out.name, out.with_suffix(".json").name))
    if stale:
        warnings.warn(f"removed {len(stale)} temporary file(s) an interrupted earlier export left beside {out}.",
                      stacklevel=2)
    run_dir, model_path = resolve_run(run)
    thr = resolve_threshold(threshold, run_dir)
    model, cfg = load_model(model_path)
    graph = AnomalyGraph(model.cpu(), cfg.image_size).eval()
    meta_path = out.with_suffix(".json")
    # The pair is one set, the .json (what a deployment reads first) last: the old pair stays
    # until the new one is complete, and a JSON never describes another .onnx.
    with files.output_set(meta_path):
        diff = export_graph(graph, out, opset)
        meta = _metadata(out, cfg, thr, opset, diff, model_path)
        files.write_json(meta_path, meta)
    return meta


def _metadata(out: Path, cfg: TrainConfig, thr: Any, opset: int, diff: float, model_path: Path) -> dict[str, Any]:
    """The export's JSON: preprocessing, threshold and provenance of the (staged) ``out``."""
    from rd.data import IMAGENET_MEAN, IMAGENET_STD

    size = cfg.image_size
    return {
        "onnx": out.name, "onnx_sha256": files.file_sha256(files.staged(out)), "opset": opset,
        "input": {"name": INPUT, "shape": ["batch", 3, size, size], "dtype": "float32", "layout": "NCHW RGB"},
        "outputs": {OUTPUTS[0]: ["batch", size, size], OUTPUTS[1]: ["batch"]},
        "image_size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "preprocessing": "RGB, resize to image_size x image_size (bilinear, antialias), x / 255, (x - mean) / std",
        "threshold": thr.value, "threshold_source": thr.source, "threshold_choice": thr.choice,
        "decision": "anomalous when score >= threshold",
        "backbone": cfg.backbone, "weights": cfg.weights, "setting": cfg.setting_name,
        "arm": f"{cfg.backbone}/{cfg.setting_name}", "seed": cfg.seed, "category": cfg.category,
        "model_pt": str(model_path), "model_pt_sha256": files.file_sha256(model_path),
        "verified_max_abs_diff": diff, "torch": torch.__version__,
    }
