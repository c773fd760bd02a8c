"""GPU training step: wide_resnet50_2 RD at 256 px, batch 16 (RESULTS.md item 5).

Arms, all in one process and interleaved window by window (median of the windows), each
``rd.train.Trainer.step``, the training loop's own step, built as ``rd.train.train`` builds it
(channels_last on CUDA, as rd.train always uses there):

  fp32             fp32 (PyTorch defaults: cuDNN convolutions may use TF32; printed)
  bf16             bf16 autocast (``rd train --bf16``)
  each with the feature cache (teacher features of the training set computed once) and
  without it (the frozen teacher runs every step), plus anomalib 2.7's RD step (wide_resnet50_2,
  its loss, Adam) when anomalib is installed.

Timing is synchronised: ``torch.cuda.synchronize()`` before and after every window, so
asynchronous kernel queues are inside the measurement. Also prints the one-off cache build
time, peak memory per arm and the amortised img/s over 200 and 10 epochs.

    python benchmarks/bench_gpu.py                 # on a CUDA machine, ~2-4 minutes
    python benchmarks/bench_gpu.py --device cpu --backbone resnet18 --image-size 64 \\
        --n-train 32 --windows 2 --steps 1         # a dry run of the script's logic on a CPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

warnings.filterwarnings("ignore")


class OursArm:
    """``rd.train.Trainer`` as ``rd.train.train`` builds it; full batches only."""

    def __init__(self, name: str, backbone: str, images: torch.Tensor, device: torch.device, batch_size: int,
                 *, bf16: bool, cache: bool) -> None:
        from rd.optim import BASELINE
        from rd.run import TrainConfig
        from rd.train import Trainer, prepare_training

        self.name, self.device, self.batch_size = name, device, batch_size
        cfg = TrainConfig(data_root="", category="", backbone=backbone, setting=BASELINE, image_size=images.shape[-1],
                          epochs=200, batch_size=batch_size, seed=0, device=str(device), bf16=bf16)
        self.setup = prepare_training(cfg, images, device)
        self.cache_seconds = None
        cached = None
        if cache:
            sync(device)
            t = time.perf_counter()
            cached = self.setup.build_feature_cache()
            sync(device)
            self.cache_seconds = time.perf_counter() - t
        self.trainer = Trainer(self.setup, 0, cached)
        self.setup.model.train()
        self._queue: list[torch.Tensor] = []
        self._epoch = 0

    def run(self) -> torch.Tensor:
        while not self._queue:
            self._epoch += 1
            self._queue = [b for b in self.trainer.batches(self._epoch) if len(b) == self.batch_size]
        return self.trainer.step(self._queue.pop(0))

    def rebuild_cache(self) -> None:
        self.setup.build_feature_cache()


class AnomalibArm:
    def __init__(self, backbone: str, images: torch.Tensor, device: torch.device, image_size: int,
                 batch_size: int) -> None:
        from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
        from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel

        torch.manual_seed(0)
        self.name = f"anomalib 2.7 {backbone} fp32"
        self.model = ReverseDistillationModel(backbone, (image_size, image_size), ["layer1", "layer2", "layer3"],
                                              "add", pre_trained=False).to(device).train()
        self.loss = ReverseDistillationLoss()
        self.optimizer = torch.optim.Adam(list(self.model.decoder.parameters())
                                          + list(self.model.bottleneck.parameters()), lr=0.005, betas=(0.5, 0.99))
        self.images, self.batch_size = images, batch_size
        self.cache_seconds = None
        self._queue: list[torch.Tensor] = []

    def run(self) -> float:
        if not self._queue:
            self._queue = [b for b in torch.randperm(len(self.images)).split(self.batch_size)
                           if len(b) == self.batch_size]
        x = self.images[self._queue.pop(0)].to(self.images.device)
        loss = self.loss(*self.model(x))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()  # its Lightning training_step logs loss.item(): a sync per step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="wide_resnet50_2")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-train", type=int, default=240, help="training images (MVTec AD categories: 60-391)")
    p.add_argument("--windows", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-anomalib", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True for every arm (rd.train leaves it off)")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device. Fix: run on a GPU machine, or pass --device cpu for a dry run.")
    B, S = args.batch_size, args.image_size
    # The images live on the device, as rd.train's pre-decoded tensors would after .to(device).
    images = torch.randn(args.n_train, 3, S, S, device=device)

    arms = []
    for cache in (True, False):
        for bf16 in (False, True):
            name = f"ours {'bf16' if bf16 else 'fp32'}, {'cache' if cache else 'no cache'}"
            arms.append(OursArm(name, args.backbone, images, device, B, bf16=bf16, cache=cache))
    if not args.no_anomalib:
        try:
            arms.append(AnomalibArm(args.backbone, images, device, S, B))
        except ImportError as exc:
            print(f"(anomalib arm skipped: {exc})", file=sys.stderr)

    times: dict[str, list[float]] = {a.name: [] for a in arms}
    peak: dict[str, float] = {}
    for a in arms:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            a.run()
        sync(device)
        if device.type == "cuda":
            peak[a.name] = torch.cuda.max_memory_allocated(device) / 2**30
    for w in range(args.windows):
        for a in arms:
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                a.run()
            sync(device)
            times[a.name].append((time.perf_counter() - t) / args.steps)
        print(f"  window {w + 1}/{args.windows}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()),
              file=sys.stderr, flush=True)
    rebuild = {}
    for a in arms:
        if getattr(a, "cache_seconds", None) is not None:
            ts = []
            for _ in range(3):
                sync(device)
                t = time.perf_counter()
                a.rebuild_cache()
                sync(device)
                ts.append(time.perf_counter() - t)
            rebuild[a.name] = statistics.median(ts)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\n### GPU training step: {args.backbone} RD, {S} px, batch {B} "
          f"(median of {args.windows} interleaved windows of {args.steps} synchronised steps)\n")
    print(f"Device: {dev_name}; torch {torch.__version__}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, cudnn.benchmark={args.cudnn_benchmark}; "
          f"n_train={args.n_train}\n")
    ref = statistics.median(times[arms[0].name])
    print("| arm | ms/step (median) | range | img/s | × ours fp32 cache | peak GiB | cache build s "
          "| img/s @200 ep | img/s @10 ep |")
    print("|---|---|---|---|---|---|---|---|---|")
    for a in arms:
        m = statistics.median(times[a.name])
        c = rebuild.get(a.name)
        amort = ["", ""]
        if c is not None:
            amort = [f"{1 / (m / B + c / args.n_train / e):.0f}" for e in (200, 10)]
        else:
            amort = [f"{B / m:.0f}", f"{B / m:.0f}"]
        print(f"| {a.name} | {m * 1e3:.1f} | {min(times[a.name]) * 1e3:.1f}–{max(times[a.name]) * 1e3:.1f} "
              f"| {B / m:.0f} | {ref / m:.2f} | {peak.get(a.name, float('nan')):.2f} "
              f"| {'' if c is None else f'{c:.2f}'} | {amort[0]} | {amort[1]} |")


if __name__ == "__main__":
    main()
