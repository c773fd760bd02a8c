"""Evaluation time per test image (rd.evaluate.evaluate_run and its parts; RESULTS.md
"Evaluation time per image"). Untrained networks: the same cost as trained ones.

    .venv/bin/python benchmarks/bench_eval.py --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_common import machine_line, table  # noqa: E402

warnings.filterwarnings("ignore")


def cmd_eval(args: argparse.Namespace) -> None:
    from rd import evaluate as ev
    from rd.method.anomaly_map import gaussian_sigma, raw_anomaly_map, smooth
    from rd.data import load_split, prepare_category
    from rd.files import save_torch
    from rd.run import TrainConfig, build_seeded, model_checkpoint

    torch.set_num_threads(args.threads)
    print(f"Machine: {machine_line(args.threads)}\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        prepare_category("textures", root, "brick", seed=0)
        rows = []
        for size in args.sizes:
            for bb in args.backbones:
                cfg = TrainConfig(data_root=str(root), category="brick", backbone=bb, image_size=size, seed=0,
                                  threads=args.threads)
                run = Path(tmp) / f"{bb}-{size}"
                run.mkdir()
                save_torch(run / "model.pt", model_checkpoint(build_seeded(cfg), cfg))  # untrained: same cost
                test = load_split(root, "brick", "test", size)
                n = len(test["images"])
                model, _ = ev.load_model(run / "model.pt")
                parts: dict[str, list[float]] = {k: [] for k in ("evaluate_run total", "load_model", "load_split",
                                                                 "network forward", "anomaly map (raw)",
                                                                 "gaussian smoothing", "metrics", "curves")}
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    ev.evaluate_run(run / "model.pt", data_root=str(root), category="brick", out_dir=run,
                                    device="cpu", threads=args.threads)
                    parts["evaluate_run total"].append(time.perf_counter() - t)
                    t = time.perf_counter(); ev.load_model(run / "model.pt"); parts["load_model"].append(time.perf_counter() - t)
                    t = time.perf_counter(); load_split(root, "brick", "test", size); parts["load_split"].append(time.perf_counter() - t)
                    with torch.no_grad():
                        t = time.perf_counter()
                        outs = [model(test["images"][i:i + 16]) for i in range(0, n, 16)]
                        parts["network forward"].append(time.perf_counter() - t)
                        t = time.perf_counter()
                        raw = torch.cat([raw_anomaly_map(tt, ss, size) for tt, ss in outs]).numpy()
                        parts["anomaly map (raw)"].append(time.perf_counter() - t)
                    t = time.perf_counter(); maps = smooth(raw, gaussian_sigma(size)); parts["gaussian smoothing"].append(time.perf_counter() - t)
                    masks = test["masks"][:, 0].numpy().astype(bool)
                    labels = test["labels"].numpy().astype(int)
                    t = time.perf_counter(); ev.compute_metrics(maps, masks, labels, list(test["defect_types"])); parts["metrics"].append(time.perf_counter() - t)
                    scores = maps.reshape(n, -1).max(1)
                    t = time.perf_counter(); ev.curves(maps, masks, scores, labels); parts["curves"].append(time.perf_counter() - t)
                for k, v in parts.items():
                    m = statistics.median(v)
                    rows.append([f"{bb} {size}px (n_test={n})", k, m, 1e3 * m / n])
        # Paper scale: the metric part alone on 100 maps of 256x256 (the AUPRO benchmark's inputs).
        from bench_aupro import make_inputs
        maps, masks = make_inputs(100, 256)
        labels = masks.any(axis=(1, 2)).astype(int)
        types = ["blob" if v else "good" for v in labels]
        scores = maps.reshape(len(maps), -1).max(1)
        for name, fn in (("metrics (rd.evaluate.compute_metrics)", lambda: ev.compute_metrics(maps, masks, labels, types)),
                         ("curves (rd.evaluate.curves)", lambda: ev.curves(maps, masks, scores, labels))):
            ts = []
            for _ in range(args.repeats):
                t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
            m = statistics.median(ts)
            rows.append(["100 synthetic 256px maps", name, m, 1e3 * m / len(maps)])
        print(f"### Evaluation time, {args.threads} threads (median of {args.repeats})\n")
        print(table(["run", "part", "s", "ms/test image"], rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--backbones", nargs="+", default=["resnet18", "convnext_pico"])
    p.add_argument("--repeats", type=int, default=3)
    cmd_eval(p.parse_args(argv))


if __name__ == "__main__":
    main()
