"""Evaluate one trained run: anomaly maps, metrics, per-image scores, curves, failure cases.

Outputs (published as one set, ``metrics.json`` last, so its presence means the rest is there):
``scores.csv``, ``curves.json``, ``failure_cases.npz`` (a bounded number of maps: the top-k
missed defects and the top-k false alarms at the run's image-level F1max threshold),
``threshold.json`` (the good-image threshold ``python -m rd predict`` uses by default: the 0.99
quantile of the scores of the run's held-out good images, or of its training images when it
held none out, see ``rd.use.thresholds``) and ``metrics.json``.
"""

from __future__ import annotations

import io as _io
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rd import files, metrics
from rd.data import denormalize
from rd.errors import RDError
from rd.params import DEVICE_DEFAULT
from rd.metric_list import METRICS
from rd.method.inference import image_scores, predict, predict_from_features
from rd.run import TrainConfig, load_model
from rd.use.thresholds import THRESHOLD_FILE, good_threshold

OUTPUTS = ("scores.csv", "curves.json", "failure_cases.npz", THRESHOLD_FILE, "metrics.json")  # metrics.json last


def select_failure_cases(test: dict, maps: np.ndarray, scores: np.ndarray, threshold: float, k: int) -> dict[str, np.ndarray]:
    """The k lowest-scored defects (missed first) and the k highest-scored good images."""
    labels = test["labels"].numpy()
    defects = np.flatnonzero(labels == 1)
    goods = np.flatnonzero(labels == 0)
    missed = defects[np.argsort(scores[defects], kind="stable")][:k]
    alarms = goods[np.argsort(-scores[goods], kind="stable")][:k]
    pick = np.concatenate([missed, alarms]).astype(int)
    return {
        "images": denormalize(test["images"][pick]),
        "masks": test["masks"][pick, 0].numpy().astype(bool),
        "maps": maps[pick].astype(np.float16),
        "scores": scores[pick].astype(np.float32),
        "labels": labels[pick].astype(np.int8),
        "paths": np.array([test["paths"][i] for i in pick], dtype=str),
        "defect_types": np.array([test["defect_types"][i] for i in pick], dtype=str),
        "kinds": np.array(["missed_defect"] * len(missed) + ["false_alarm"] * len(alarms), dtype=str),
        "threshold": np.float64(threshold),
    }


def compute_metrics(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, defect_types: list[str]) -> dict[str, Any]:
    scores = image_scores(maps)
    img_f1, img_thr = metrics.f1_max_threshold(scores, labels)
    pix_f1, pix_thr = metrics.f1_max_threshold(maps.ravel(), masks.ravel())
    types = np.array(defect_types)
    per_type = {
        t: metrics.image_auroc(scores[(types == t) | (labels == 0)], labels[(types == t) | (labels == 0)])
        for t in sorted(set(defect_types) - {"good"})
    }
    # The F1max thresholds are found once (pixels: the costly PR curve) and reused by IoU.
    at_f1max = {("f1_max", "image"): img_f1, ("f1_max", "pixel"): pix_f1,
                ("iou_at_f1max", "pixel"): metrics.iou_at_threshold(maps, masks, pix_thr)}
    inputs = {"image": (scores, labels), "pixel": (maps, masks)}
    result: dict[str, Any] = {
        m.name: at_f1max[(m.function, m.level)] if (m.function, m.level) in at_f1max
        else getattr(metrics, m.function)(*inputs[m.level]) for m in METRICS}
    return {**result, "image_f1max_threshold": img_thr, "pixel_f1max_threshold": pix_thr,
            "per_defect_image_auroc": per_type}


def curves(maps: np.ndarray, masks: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    img_fpr, img_tpr = metrics.roc_points(scores, labels)
    pix_fpr, pix_tpr = metrics.roc_points(maps.ravel(), masks.ravel())
    pro_fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=0.3)
    if len(pro_fpr) > 1000:
        keep = np.unique(np.linspace(0, len(pro_fpr) - 1, 1000).round().astype(int))
        pro_fpr, pro = pro_fpr[keep], pro[keep]
    as_list = lambda a: [round(float(v), 6) for v in a]  # noqa: E731
    return {"image_roc": {"fpr": as_list(img_fpr), "tpr": as_list(img_tpr)},
            "pixel_roc": {"fpr": as_list(pix_fpr), "tpr": as_list(pix_tpr)},
            "pro": {"fpr": as_list(pro_fpr), "pro": as_list(pro)}}


def _good_scores(model: Any, cfg: TrainConfig, data_root: str, category: str, dataset: str,
                 device: Any, *, train_images: torch.Tensor | None = None,
                 train_features: list[torch.Tensor] | None = None) -> tuple[np.ndarray, str]:
    """Image scores of the good images the threshold comes from, and their threshold_source: the
    run's held-out good images (picked as training picked them, from its train config), else
    (validation_fraction 0) its training images -- whose teacher features or tensors the train
    process hands over when it evaluates in-process, so they are not computed twice."""
    from rd.data import good_split, load_samples

    part = good_split(dataset, data_root, category, cfg.validation_fraction, cfg.data_seed)
    if not part.held_out and train_features is not None:
        return image_scores(predict_from_features(model, train_features, cfg.image_size, cfg.batch_size)), \
            part.source
    if not part.held_out and train_images is not None:
        images = train_images
    else:
        images = load_samples(part.held_out or part.train, cfg.image_size)["images"]
    scores = image_scores(predict(model, images, cfg.image_size, device, cfg.batch_size))
    return scores, part.source


def check_labels(labels: np.ndarray, data_root: str, category: str) -> None:
    if labels.min() == labels.max():
        raise RDError(f"The test set of {data_root}/{category} has only {'defect' if labels[0] else 'good'} images.",
                      "AUROC needs both good and defective test images.")


def evaluate_model(model: torch.nn.Module, cfg: TrainConfig, out_dir: str | os.PathLike, *, data_root: str,
                   category: str, dataset: str, device: torch.device | str, failure_cases: int = 4,
                   test: dict | None = None, test_features: list[torch.Tensor] | None = None,
                   train_images: torch.Tensor | None = None, train_features: list[torch.Tensor] | None = None,
                   t0: float | None = None) -> dict[str, Any]:
    """Evaluate a network already in memory and write :data:`OUTPUTS` into ``out_dir``.

    ``rd evaluate`` calls it on the model it rebuilt from ``model.pt``; ``rd train`` on the model
    it just trained, handing over what it already holds (the test split, the teacher's features
    of the test and training images) so nothing is decoded or run through the teacher twice.
    Either way the numbers are the same (``tests/test_staging.py``).
    """
    from rd.data import load_split

    t0 = time.perf_counter() if t0 is None else t0
    out = Path(out_dir)
    name = cfg.backbone_name
    if test is None:
        test = load_split(data_root, category, "test", cfg.image_size, dataset=dataset)
    labels = test["labels"].numpy().astype(int)
    check_labels(labels, data_root, category)
    if test_features is not None:
        maps = predict_from_features(model, test_features, cfg.image_size, cfg.batch_size)
    else:
        maps = predict(model, test["images"], cfg.image_size, device, cfg.batch_size)
    good_scores, threshold_source = _good_scores(model, cfg, data_root, category, dataset, device,
                                                 train_images=train_images, train_features=train_features)
    masks = test["masks"][:, 0].numpy().astype(bool)
    scores = image_scores(maps)
    try:
        result = compute_metrics(maps, masks, labels, list(test["defect_types"]))
    except ValueError as exc:  # degenerate test data: no defect pixel, NaN maps, ...
        raise RDError(f"Cannot compute metrics for {data_root}/{category}: {exc}.",
                      "check the test set and its ground-truth masks.") from exc
    result.update({
        "category": category, "backbone": name, "model": cfg.backbone, "setting": cfg.setting_name,
        "arm": f"{name}/{cfg.setting_name}", "seed": cfg.seed, "weights": cfg.weights,
        "image_size": cfg.image_size, "n_test": int(len(labels)), "n_anomalous": int(labels.sum()),
    })
    # One set, metrics.json (it marks a complete evaluation) last: a failure below (full disk)
    # leaves the earlier evaluation as it was, never new files beside an old marker.
    with files.output_set(out / "metrics.json"):
        files.write_csv(out / "scores.csv", pd.DataFrame({"path": list(test["paths"]),
                                                       "defect_type": list(test["defect_types"]),
                                                       "label": labels, "score": scores}))
        files.write_json(out / "curves.json", curves(maps, masks, scores, labels))
        buf = _io.BytesIO()
        cases = select_failure_cases(test, maps, scores, result["image_f1max_threshold"], failure_cases)
        np.savez_compressed(buf, **cases)
        files.write_bytes(out / "failure_cases.npz", buf.getvalue())
        files.write_json(out / THRESHOLD_FILE, good_threshold(good_scores, threshold_source))
        result["eval_seconds"] = time.perf_counter() - t0
        files.write_json(out / "metrics.json", result)
    return result


def evaluate_run(model_path: str | os.PathLike, *, data_root: str, category: str, out_dir: str | os.PathLike,
                 device: str = DEVICE_DEFAULT, threads: int = 1, failure_cases: int = 4,
                 dataset: str | None = None) -> dict[str, Any]:
    """Rebuild the run from ``model.pt`` and evaluate it in full (the staged path is ``rd.staging``)."""
    from rd.devices import resolve_device

    t0 = time.perf_counter()
    out = files.ensure_writable_dir(out_dir)
    if files.clear_stale_temporaries(out, OUTPUTS):
        warnings.warn(f"removed temporary files an interrupted earlier evaluation left in {out}.", stacklevel=2)
    torch.set_num_threads(max(1, threads))
    model, cfg = load_model(model_path)
    dataset = dataset or cfg.dataset  # default: the layout the run was trained on
    with resolve_device(device) as lease:
        model = model.to(lease.device)
        return evaluate_model(model, cfg, out, data_root=data_root, category=category, dataset=dataset,
                              device=lease.device, failure_cases=failure_cases, t0=t0)
