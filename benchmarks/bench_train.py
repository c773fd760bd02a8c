"""Training throughput, achieved GFLOP/s and where a step's time goes (RESULTS.md items 1 and 4).

Sub-commands (each prints markdown tables; run them with the benchmark environment, i.e. one
with ``anomalib==2.7.0`` and ``fvcore`` installed next to this repo's dependencies):

  step     items 1 + 4. ``rd.train.Trainer.step`` (the training loop's own step: cached teacher
           features -> student -> loss -> backward -> optimizer -> scheduler) for resnet18 and
           convnext_pico, against anomalib 2.7's ReverseDistillationModel (resnet18, its
           ReverseDistillationLoss, Adam as in its Lightning module), all in ONE process,
           interleaved window by window (A, B, C, ..., A, B, C, ...), median of the windows.
           Also times the one-off feature-cache build (the frozen teacher over the training set)
           to give amortised img/s for a 200-epoch and a 10-epoch budget, and a large fp32
           torch.mm in the same rotation for the achieved-vs-GEMM GFLOP/s of item 4.
  profile  torch.profiler tables (phases, top ops by self CPU time) of our step and anomalib's.

Evaluation time and job startup are ``bench_eval.py`` and ``bench_startup.py``.

Example (the numbers in benchmarks/RESULTS.md):

    .venv-bench/bin/python benchmarks/bench_train.py step --threads 2 --windows 7

Inputs are the embedded texture category ``brick`` decoded once (as ``rd.train`` holds it);
anomalib gets its batches from the same tensor, so its PNG decoding and Lightning overhead are
NOT charged to it (the comparison favours anomalib) except in its "+ its data path" arm.
``rd`` is imported from the repo root.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_common import Arm, interleave, machine_line, paired, spread, table  # noqa: E402

warnings.filterwarnings("ignore")

LAYERS = ["layer1", "layer2", "layer3"]


class Ours:
    """``rd.train.Trainer`` as ``rd.train.train`` builds it (baseline setting), fed full batches only
    (so every timed step has the same size): the timed step is the training loop's own."""

    def __init__(self, backbone: str, images: torch.Tensor, batch_size: int, *, cache: bool = True,
                 seed: int = 0) -> None:
        from rd.optim import BASELINE
        from rd.run import TrainConfig
        from rd.train import Trainer, prepare_training

        self.batch_size = batch_size
        cfg = TrainConfig(data_root="", category="", backbone=backbone, setting=BASELINE, image_size=images.shape[-1],
                          epochs=200, batch_size=batch_size, seed=seed, device="cpu")
        self.setup = prepare_training(cfg, images, torch.device("cpu"))
        self.trainer = Trainer(self.setup, seed, self.setup.build_feature_cache() if cache else None)
        self.setup.model.train()
        self._queue: list[torch.Tensor] = []
        self._epoch = 0

    def next_batch(self) -> torch.Tensor:
        while not self._queue:
            self._epoch += 1
            self._queue = [b for b in self.trainer.batches(self._epoch) if len(b) == self.batch_size]
        return self._queue.pop(0)

    def step(self) -> torch.Tensor:
        return self.trainer.step(self.next_batch())

    def build_cache(self) -> None:
        self.setup.build_feature_cache()


class Anomalib:
    """anomalib 2.7's RD training step (what its Lightning training_step + optimizer do)."""

    def __init__(self, images: torch.Tensor, image_size: int, batch_size: int, seed: int = 0) -> None:
        from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
        from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel

        torch.manual_seed(seed)
        self.model = ReverseDistillationModel("resnet18", (image_size, image_size), LAYERS, "add",
                                              pre_trained=False)
        self.model.train()
        self.loss = ReverseDistillationLoss()
        # anomalib's ReverseDistillation.configure_optimizers (betas (0.5, 0.99) in 2.7.0)
        self.optimizer = torch.optim.Adam(list(self.model.decoder.parameters())
                                          + list(self.model.bottleneck.parameters()), lr=0.005, betas=(0.5, 0.99))
        self.images, self.batch_size = images, batch_size
        self._g = torch.Generator().manual_seed(seed)
        self._queue: list[torch.Tensor] = []

    def step(self) -> float:
        if not self._queue:
            self._queue = [b for b in torch.randperm(len(self.images), generator=self._g).split(self.batch_size)
                           if len(b) == self.batch_size]
        x = self.images[self._queue.pop(0)]
        loss = self.loss(*self.model(x))
        self.optimizer.zero_grad()  # Lightning's default: set_to_none=True
        loss.backward()
        self.optimizer.step()
        return loss.item()  # its training_step logs loss.item()


class AnomalibWithData(Anomalib):
    """The same step, plus what anomalib's data path does for every batch of every epoch:
    its MVTecADDataset reads and decodes the PNGs (PIL -> float tensor), its collate_fn builds
    the batch and the model's PreProcessor transform (Resize + ImageNet Normalize) runs on it.
    In-process (num_workers=0): on a 2-core machine DataLoader workers would compete for the
    same cores. Lightning's own per-step overhead is still not charged.
    """

    def __init__(self, root: Path, category: str, image_size: int, batch_size: int, seed: int = 0) -> None:
        from anomalib.data.datasets import MVTecADDataset
        from anomalib.models import ReverseDistillation

        self.dataset = MVTecADDataset(root=root, category=category, split="train")
        self.transform = ReverseDistillation.configure_pre_processor((image_size, image_size)).transform
        super().__init__(torch.empty(len(self.dataset), 0), image_size, batch_size, seed)

    def step(self) -> float:
        if not self._queue:
            self._queue = [b for b in torch.randperm(len(self.images), generator=self._g).split(self.batch_size)
                           if len(b) == self.batch_size]
        batch = self.dataset.collate_fn([self.dataset[int(i)] for i in self._queue.pop(0)])
        x = self.transform(batch.image)
        loss = self.loss(*self.model(x))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


def training_data(tmp: Path, image_size: int, n_train: int) -> tuple[Path, str]:
    """The embedded texture category ``brick`` (real photographs, MVTec AD layout) on disk."""
    from rd.data import prepare_category

    root = tmp / "data"
    prepare_category("textures", root, "brick", seed=0,
                     generate_options={"n_train": n_train, "size": max(128, image_size)})
    return root, "brick"


def gemm_arm(n: int = 2048) -> tuple[Arm, float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    return Arm(f"torch.mm {n}x{n} fp32", lambda: torch.mm(a, b, out=out), units=5), 2.0 * n ** 3


# --------------------------------------------------------------------------- FLOPs (fvcore)
# --------------------------------------------------------------------------- FLOPs (fvcore)
def fvcore_fmas(image_size: int, backbones: list[str]) -> dict[str, dict[str, float]]:
    """Per-image fvcore counts (1 FMA = 1 FLOP) of teacher and student, ours and anomalib's."""
    from rd.complexity import count_flops
    from rd.method import build_rd

    out = {}
    x = torch.randn(1, 3, image_size, image_size)
    for bb in backbones:
        m = build_rd(bb, "none").eval()
        with torch.no_grad():
            f = m.teacher(x)
            student = count_flops(m.bottleneck, (f,))[0] + count_flops(m.decoder, (m.bottleneck(f),))[0]
            out[bb] = {"teacher": count_flops(m.teacher, (x,))[0], "student": student}
    try:
        from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
    except ImportError:
        return out
    am = ReverseDistillationModel("resnet18", (image_size, image_size), LAYERS, "add", pre_trained=False).eval()

    class AStudent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b, self.d = am.bottleneck, am.decoder

        def forward(self, *f: torch.Tensor) -> Any:
            return self.d(self.b(list(f)))

    with torch.no_grad():
        f = list(am.encoder(x).values())
        out["anomalib"] = {"teacher": count_flops(am.encoder, (x,))[0], "student": count_flops(AStudent(), tuple(f))[0]}
    return out


# --------------------------------------------------------------------------- sub-commands

def cmd_step(args: argparse.Namespace) -> None:
    from rd.data import load_split

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B = args.batch_size
    tmp = tempfile.TemporaryDirectory()
    root, category = training_data(Path(tmp.name), args.image_size, args.n_train)
    decode = lambda: load_split(root, category, "train", args.image_size)["images"]  # noqa: E731
    images = decode()
    print(f"building arms (n_train={len(images)}, {args.image_size}px, batch {B}) ...", file=sys.stderr)
    anom = Anomalib(images, args.image_size, B)
    r18 = Ours("resnet18", images, B)
    pico = Ours("convnext_pico", images, B)
    arms = [Arm("anomalib resnet18", anom.step)]
    if not args.no_anomalib_data:
        anom_data = AnomalibWithData(root, category, args.image_size, B)
        arms.append(Arm("anomalib resnet18 + its data path", anom_data.step))
    arms += [Arm("ours resnet18", r18.step), Arm("ours convnext_pico", pico.step)]
    r18nc = Ours("resnet18", images, B, cache=False)
    arms += [Arm("ours resnet18, feature_cache=False", r18nc.step)]
    one_off = [Arm("decode training set (load_split)", decode), Arm("cache build resnet18", r18.build_cache),
               Arm("cache build convnext_pico", pico.build_cache)]
    gemm, gemm_flop = gemm_arm()
    for a in arms:
        a.units = args.steps
    interleave(arms + one_off + [gemm], args.windows, args.warmup)
    tmp.cleanup()

    fl = fvcore_fmas(args.image_size, ["resnet18", "convnext_pico"])
    gemm_gflops = gemm_flop / gemm.median / 1e9
    base = arms[0]
    print(f"\n### Training step, {args.image_size} px, batch {B}, {args.threads} threads "
          f"(median of {args.windows} interleaved windows of {args.steps} steps)\n")
    print(f"Machine: {machine_line(args.threads)}\n")
    rows = []
    step_gflop = {}  # per step, real FLOPs (2 per fvcore FMA)
    for a in arms:
        bb = "convnext_pico" if "pico" in a.name else "resnet18"
        key = "anomalib" if a.name.startswith("anomalib") else bb
        f = fl.get(key, fl[bb])
        teacher = f["teacher"] if (key == "anomalib" or "cache=False" in a.name) else 0
        step_gflop[a.name] = 2 * B * (3 * f["student"] + teacher) / 1e9
        rows.append([a.name, a.median, spread(a), B / a.median, base.median / a.median, paired(base, a),
                     step_gflop[a.name] / a.median, step_gflop[a.name] / a.median / gemm_gflops])
    print(table(["arm", "s/step (median)", "range", "img/s", "× anomalib (ratio of medians)",
                 "× anomalib (median of per-round ratios)", "achieved GFLOP/s", "of GEMM"], rows))
    print(f"\nGEMM (same run, same rotation): {gemm.name}: {gemm_gflops:.0f} GFLOP/s "
          f"(2·n³ FLOPs; range {gemm_flop / max(gemm.windows) / 1e9:.0f}–{gemm_flop / min(gemm.windows) / 1e9:.0f}).")
    print("Achieved GFLOP/s = fvcore FMAs × 2 (FLOPs) × (3 × student [fwd + bwd] + teacher forward when it "
          "runs in the step) × batch / median step time.")

    n = len(images)
    print(f"\n### Amortised throughput including the one-off costs ({n} training images: decode once + "
          "teacher feature cache once)\n")
    rows = []
    by_name = {a.name: a for a in arms}
    for bb, c in (("resnet18", one_off[1]), ("convnext_pico", one_off[2])):
        a = by_name[f"ours {bb}"]
        per_img_once = (one_off[0].median + c.median) / n
        row = [bb, one_off[0].median, c.median, 1e3 * per_img_once]
        for epochs in (200, 10):
            t_img = a.median / B + per_img_once / epochs
            row += [1 / t_img, base.median / B / t_img]
        rows.append(row)
    print(table(["backbone", "decode s", "cache build s", "one-off ms/img", "img/s @200 ep",
                 "× anomalib @200", "img/s @10 ep", "× anomalib @10"], rows))
    print("\nPer trained image: step time / batch + one-off time per image / epochs (each epoch sees every "
          "training image once). The anomalib reference is the first row above (pre-decoded tensors, no "
          "data path): nothing is amortised for it.")
    print("\nFLOPs per image (fvcore, 1 FMA = 1): " + "; ".join(
        f"{k}: teacher {v['teacher'] / 1e9:.3f} G, student {v['student'] / 1e9:.3f} G" for k, v in fl.items()))
    print("\nWindows (s per unit): " + "; ".join(f"{a.name}: " + " ".join(f"{w:.3f}" for w in a.windows)
                                               for a in arms + one_off + [gemm]))


def _labelled(fn: Callable, name: str) -> Callable:
    from torch.profiler import record_function

    def wrapped(*a: Any, **k: Any) -> Any:
        with record_function(name):
            return fn(*a, **k)
    return wrapped


def cmd_profile(args: argparse.Namespace) -> None:
    """torch.profiler over interleaved rounds (arm 1 steps, arm 2 steps, ...), op times summed.

    Phases come from labels put around the teacher / student forward (instance attributes set
    by this script only), the optimizer's own ``Optimizer.step`` range and the autograd
    engine's per-node ranges (backward); "other" is the rest of the step's wall time (loss,
    Python, allocation).
    """
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    root, category = training_data(Path(tmp.name), args.image_size, args.n_train)
    from rd.data import load_split
    images = load_split(root, category, "train", args.image_size)["images"]
    B = args.batch_size
    anom = Anomalib(images, args.image_size, B)
    anom.model.encoder.forward = _labelled(anom.model.encoder.forward, "phase: teacher forward")
    anom.model.bottleneck.forward = _labelled(anom.model.bottleneck.forward, "phase: student forward")
    anom.model.decoder.forward = _labelled(anom.model.decoder.forward, "phase: student forward")
    ours = {"ours resnet18": Ours("resnet18", images, B), "ours convnext_pico": Ours("convnext_pico", images, B)}
    for o in ours.values():
        o.setup.model.student = _labelled(o.setup.model.student, "phase: student forward")
        o.trainer.source = _labelled(o.trainer.source, "phase: gather cached features")
    runs = {"anomalib resnet18": anom.step, **{k: o.step for k, o in ours.items()}}
    ops: dict[str, dict[str, list[float]]] = {k: {} for k in runs}      # op -> [self us, calls]
    phases: dict[str, dict[str, float]] = {k: {} for k in runs}
    wall: dict[str, float] = {k: 0.0 for k in runs}
    for fn in runs.values():
        for _ in range(args.warmup):
            fn()
    for _ in range(args.windows):
        for name, fn in runs.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                wall[name] += time.perf_counter() - t
            for e in prof.key_averages():
                acc = ops[name].setdefault(e.key, [0.0, 0])
                acc[0] += e.self_cpu_time_total
                acc[1] += e.count
                ph = None
                if e.key.startswith("phase: "):
                    ph = e.key[len("phase: "):]
                elif e.key.startswith("autograd::engine::evaluate_function"):
                    ph = "backward"
                elif e.key.startswith("Optimizer.step#"):
                    ph = "optimizer step"
                elif e.key.startswith("Optimizer.zero_grad#"):
                    ph = "zero_grad"
                if ph:
                    phases[name][ph] = phases[name].get(ph, 0.0) + e.cpu_time_total / 1e6
    tmp.cleanup()
    n = args.windows * args.steps
    print(f"Machine: {machine_line(args.threads)}\n")
    print(f"### Where a training step's time goes ({args.image_size} px, batch {B}, {args.threads} threads; "
          f"torch.profiler over {args.windows} interleaved rounds of {args.steps} steps per arm)\n")
    order = ["teacher forward", "gather cached features", "student forward", "backward", "optimizer step",
             "zero_grad"]
    rows = []
    for name in runs:
        per = {k: v / n for k, v in phases[name].items()}
        step = wall[name] / n
        other = step - sum(per.values())
        rows.append([name, 1e3 * step] + [f"{1e3 * per.get(k, 0.0):.0f} ({100 * per.get(k, 0.0) / step:.0f}%)"
                                          for k in order] + [f"{1e3 * other:.0f} ({100 * other / step:.0f}%)"])
    print(table(["arm", "ms/step (profiled)"] + [f"{k} ms" for k in order] + ["other ms"], rows))
    for name in runs:
        total = sum(v[0] for v in ops[name].values())
        top = sorted(ops[name].items(), key=lambda kv: -kv[1][0])[:args.top]
        print(f"\n#### {name}: top ops by self CPU time\n")
        print(table(["op", "ms/step", "% of step", "calls/step"],
                    [[k, v[0] / 1e3 / n, 100 * v[0] / total, round(v[1] / n)] for k, v in top]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q: argparse.ArgumentParser, windows: int = 7, steps: int = 3) -> None:
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--image-size", type=int, default=128)
        q.add_argument("--batch-size", type=int, default=16)
        q.add_argument("--n-train", type=int, default=100, help="training images the feature cache covers")
        q.add_argument("--windows", type=int, default=windows)
        q.add_argument("--steps", type=int, default=steps, help="steps per timed window")
        q.add_argument("--warmup", type=int, default=2, help="untimed steps per arm first")

    q = sub.add_parser("step", help="items 1 and 4: ours vs anomalib, interleaved; GFLOP/s vs GEMM")
    common(q)
    q.add_argument("--no-anomalib-data", action="store_true", help="skip the anomalib + its data path arm")
    q.set_defaults(fn=cmd_step)
    q = sub.add_parser("profile", help="torch.profiler phases and top ops of ours and anomalib's step")
    common(q, windows=3, steps=2)
    q.add_argument("--top", type=int, default=12)
    q.set_defaults(fn=cmd_profile)
    args = p.parse_args(argv)
    print(f"command: {Path(sys.executable).name} benchmarks/bench_train.py {' '.join(sys.argv[1:])}", file=sys.stderr)
    args.fn(args)


if __name__ == "__main__":
    main()
