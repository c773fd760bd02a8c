"""Exact AUPRO: rd.metrics.aupro vs anomalib 2.7's AUPRO on identical inputs (RESULTS.md item 2).

100 score maps of 256x256: about half the images carry 1-4 blob-shaped defect regions, the
score maps are smooth noise plus a smoothed copy of the mask (correlated, imperfect). Both
implementations get the same float32 maps and boolean masks; anomalib gets them as torch
tensors (zero-copy), so conversion is not timed for either side. Timings interleave the two
and report the median of ``--repeats`` runs after one warm-up each.

anomalib is a benchmark-only extra and must never be importable from ``rd``: run this with a
separate environment that has ``anomalib==2.7.0`` (plus scikit-learn, scipy) installed, e.g.

    .venv-bench/bin/python benchmarks/bench_aupro.py --threads 2

``rd`` is imported from the repository root via ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rd.metrics import aupro  # noqa: E402


def make_inputs(
    n: int = 100, size: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic-looking test set: blob defects on ~half the images, smooth correlated maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    maps = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 5)):
                # an ellipse with a noisy (smoothed-noise-perturbed) outline
                cy, cx = rng.uniform(0.1 * size, 0.9 * size, 2)
                ry, rx = rng.uniform(0.02 * size, 0.12 * size, 2)
                theta = rng.uniform(0, np.pi)
                dy, dx = yy - cy, xx - cx
                u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
                v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
                wobble = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6) * 8
                masks[i] |= (u * u + v * v) < 1.0 + wobble
        # smooth background noise of unit std (RD maps are Gaussian-blurred, sigma 4 at
        # 256 px) plus a blurred copy of the mask of random strength: some defects stand
        # out, some hardly do, as in a real test set
        noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 4)
        noise /= noise.std()
        signal = ndimage.gaussian_filter(masks[i].astype(np.float64), 4)
        maps[i] = (0.3 + 0.1 * noise + signal * rng.uniform(0.2, 1.2)).astype(np.float32)
    return maps, masks


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def once(fn) -> tuple[float, float]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="number of maps")
    ap.add_argument("--size", type=int, default=256, help="map side in pixels")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--fpr-limit", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    try:
        import anomalib
        import torch
        from anomalib.metrics import AUPRO
    except ImportError as exc:  # pragma: no cover - depends on the bench environment
        sys.exit(
            f"error: anomalib is not importable ({exc}). Fix: run with an environment that "
            "has the [bench] extra (anomalib==2.7.0), e.g. .venv-bench/bin/python"
        )
    torch.set_num_threads(args.threads)

    maps, masks = make_inputs(args.n, args.size, args.seed)
    n_regions = sum(ndimage.label(m, structure=np.ones((3, 3)))[1] for m in masks)
    maps_t = torch.from_numpy(maps)
    masks_t = torch.from_numpy(masks)

    def run_ours() -> float:
        return aupro(maps, masks, fpr_limit=args.fpr_limit)

    def run_anomalib() -> float:
        metric = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=args.fpr_limit)
        metric.update(SimpleNamespace(anomaly_map=maps_t, gt_mask=masks_t))
        return float(metric.compute())

    # one warm-up each, then interleave so drift in machine load hits both sides alike
    run_ours()
    run_anomalib()
    ours_t: list[float] = []
    theirs_t: list[float] = []
    for _ in range(args.repeats):
        t, ours_v = once(run_ours)
        ours_t.append(t)
        t, theirs_v = once(run_anomalib)
        theirs_t.append(t)

    ours_med = statistics.median(ours_t)
    theirs_med = statistics.median(theirs_t)
    diff = abs(ours_v - theirs_v)
    print(
        f"AUPRO benchmark: {args.n} maps {args.size}x{args.size} float32, "
        f"{int(masks.any(axis=(1, 2)).sum())} defective images, {n_regions} regions, "
        f"fpr_limit {args.fpr_limit}, seed {args.seed}"
    )
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cpus, "
        f"torch threads {torch.get_num_threads()}; python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}, anomalib {anomalib.__version__}"
    )
    print(f"median of {args.repeats} timed repeats (after one warm-up each), interleaved")
    print()
    print("| implementation            | median s | min s  | AUPRO          |")
    print("|---------------------------|----------|--------|----------------|")
    print(f"| rd.metrics.aupro          | {ours_med:8.4f} | {min(ours_t):.4f} | {ours_v:.12f} |")
    print(
        f"| anomalib 2.7 AUPRO        | {theirs_med:8.4f} | {min(theirs_t):.4f} | {theirs_v:.12f} |"
    )
    print()
    print(f"time ratio ours/anomalib: {ours_med / theirs_med:.3f}  (target <= 0.5)")
    print(f"|AUPRO difference|: {diff:.3e}  (target <= 1e-6)")
    ok = ours_med <= 0.5 * theirs_med and diff <= 1e-6
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
