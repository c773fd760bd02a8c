"""ONNX export: file size and onnxruntime latency against PyTorch (``python -m rd export``).

For each backbone and image size the RD network (random init: weights do not change the
timing) is wrapped in ``rd.use.export.AnomalyGraph`` and exported exactly as ``python -m rd
export`` does; then three arms score the same random batch, interleaved round by round
(A, B, C, A, B, C, ...) in one process with the same thread count (onnxruntime's idle threads
and torch's OpenMP ones do not spin, so no arm takes CPU from the next), median over the rounds:

  torch-predict  what ``python -m rd predict`` / ``evaluate`` run: the model forward in torch,
                 the anomaly map in torch and its Gaussian blur in scipy (rd.method.inference.predict)
  torch-graph    the exported graph in torch (the blur as two fixed convolutions)
  onnxruntime    the exported file in onnxruntime's CPU provider

Example (numbers for benchmarks/RESULTS.md):

    python benchmarks/bench_export.py --threads 2 --batch 8 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# torch's OpenMP workers would otherwise spin after each call and slow the next arm down
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

warnings.filterwarnings("ignore")


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(backbone: str, size: int, batch: int, threads: int, rounds: int, folder: Path) -> dict:
    from rd.use.export import AnomalyGraph, export_graph, onnx_session
    from rd.method.inference import predict
    from rd.run import TrainConfig, build_seeded

    model = build_seeded(TrainConfig(data_root="-", category="-", backbone=backbone, image_size=size)).eval()
    graph = AnomalyGraph(model, size).eval()
    path = folder / f"{backbone}_{size}.onnx"
    t0 = time.perf_counter()
    diff = export_graph(graph, path)
    export_s = time.perf_counter() - t0
    session = onnx_session(path, threads=threads, spin=False)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    xn = x.numpy()

    def torch_predict():
        predict(model, x, size, "cpu", batch)

    def torch_graph():
        with torch.no_grad():
            graph(x)

    def ort():
        session.run(None, {"image": xn})

    arms = {"torch-predict": torch_predict, "torch-graph": torch_graph, "onnxruntime": ort}
    for fn in arms.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, fn in arms.items():
            times[name].append(_time(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"backbone": backbone, "size": size, "mb": path.stat().st_size / 2**20, "export_s": export_s,
            "diff": diff, **{f"{k}_ms": 1000 * v / batch for k, v in med.items()},
            "ratio": med["torch-predict"] / med["onnxruntime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "convnext_pico"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads {a.threads}, "
          f"batch {a.batch}, median of {a.rounds} interleaved rounds; latency per image\n")
    print("| backbone | px | ONNX file | export | torch-predict | torch-graph | onnxruntime | torch-predict / ORT |"
          " max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in a.backbones:
            for size in a.sizes:
                r = bench(backbone, size, a.batch, a.threads, a.rounds, Path(tmp))
                print(f"| {r['backbone']} | {r['size']} | {r['mb']:.1f} MiB | {r['export_s']:.1f} s "
                      f"| {r['torch-predict_ms']:.1f} ms | {r['torch-graph_ms']:.1f} ms | {r['onnxruntime_ms']:.1f} ms "
                      f"| {r['ratio']:.2f} | {r['diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
