"""Training throughput, achieved GFLOP/s, evaluation time and job startup (RESULTS.md items 1 and 4).

Sub-commands (each prints markdown tables; run them with the benchmark environment, i.e. one
with ``anomalib==2.7.0`` and ``fvcore`` installed next to this repo's dependencies):

  step     item 1 + 4. Our full training step (rd.train.FeatureSource + rd.train.training_step +
           the scheduler step: exactly what ``rd.train.train`` runs per batch) for resnet18 and
           convnext_pico, against anomalib 2.7's ReverseDistillationModel (resnet18, its
           ReverseDistillationLoss, Adam as in its Lightning module), all in ONE process,
           interleaved window by window (A, B, C, ..., A, B, C, ...), median of the windows.
           Also times the one-off feature-cache build (the frozen teacher over the training set)
           to give amortised img/s for a 200-epoch and a 10-epoch budget, and a large fp32
           torch.mm in the same rotation for the achieved-vs-GEMM GFLOP/s of item 4.
  levers   side-by-side arms for the levers that keep the maths identical: channels_last on the
           CPU, Adam foreach / fused, advanced indexing vs index_select into buffers.
  profile  torch.profiler tables (top ops by self CPU time) of our step and anomalib's.
  eval     evaluation time per test image (rd.evaluate.evaluate_run and its parts).
  startup  fixed per-job cost: interpreter + imports of torch, timm, rd.train, rd.evaluate.

Example (the numbers in benchmarks/RESULTS.md):

    .venv-bench/bin/python benchmarks/bench_train.py step --threads 2 --windows 7

Inputs are random tensors of the training shape (pre-decoded, as ``rd.train`` holds them);
anomalib gets its batches from the same tensor, so its PNG decoding and Lightning overhead are
NOT charged to it (the comparison favours anomalib). ``rd`` is imported from the repo root.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

warnings.filterwarnings("ignore")

LAYERS = ["layer1", "layer2", "layer3"]


# --------------------------------------------------------------------------- helpers
def machine_line(threads: int) -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    try:
        import anomalib
        anomalib_v = anomalib.__version__
    except ImportError:
        anomalib_v = "not installed"
    import timm
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average {load}; python {platform.python_version()}, "
            f"torch {torch.__version__} ({threads} threads), timm {timm.__version__}, anomalib {anomalib_v}; "
            f"date {date.today().isoformat()}")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(out)


class Arm:
    """A named thing to time: ``run()`` does one unit of work (a step, a cache build, a GEMM)."""

    def __init__(self, name: str, run: Callable[[], Any], units: int = 1) -> None:
        self.name, self.run, self.units = name, run, units
        self.windows: list[float] = []  # seconds per unit, one value per timed window

    @property
    def median(self) -> float:
        return statistics.median(self.windows)


def interleave(arms: list[Arm], windows: int, warmup: int, log: bool = True) -> None:
    """Warm every arm up, then time ``windows`` rounds of (arm 1 window, arm 2 window, ...)."""
    for arm in arms:
        for _ in range(warmup):
            arm.run()
    for w in range(windows):
        for arm in arms:
            t = time.perf_counter()
            for _ in range(arm.units):
                arm.run()
            arm.windows.append((time.perf_counter() - t) / arm.units)
        if log:
            print(f"  window {w + 1}/{windows}: " + ", ".join(f"{a.name} {a.windows[-1]:.3f}s" for a in arms)
                  + f"  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def spread(arm: Arm) -> str:
    return f"{min(arm.windows):.3f}–{max(arm.windows):.3f}"


def paired(ref: Arm, arm: Arm) -> float:
    """Median over windows of ref-time / arm-time measured in the same round (robust to load drift)."""
    return statistics.median(r / a for r, a in zip(ref.windows, arm.windows))


# --------------------------------------------------------------------------- the arms
class Ours:
    """Our training loop's per-batch work, built the way rd.train.train builds it."""

    def __init__(self, backbone: str, images: torch.Tensor, batch_size: int, *, cache: bool = True,
                 channels_last: bool = False, adam: str = "default", gather: str = "index_select",
                 seed: int = 0) -> None:
        from rd.optim import BASELINE, make_scheduler
        from rd.run import TrainConfig
        from rd.train import FeatureSource, batches, epoch_order, prepare_training, teacher_features, training_step

        self.backbone, self.images, self.batch_size = backbone, images, batch_size
        self.device = torch.device("cpu")
        cfg = TrainConfig(data_root="", category="", backbone=backbone, setting=BASELINE, image_size=images.shape[-1],
                          epochs=200, batch_size=batch_size, seed=seed, device="cpu")
        setup = prepare_training(cfg, images, self.device)  # exactly what rd.train.train builds
        self.model, self.optimizer, self.scheduler = setup.model, setup.optimizer, setup.scheduler
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if adam != "default":  # another Adam implementation, same update rule
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.Adam(trainable, lr=BASELINE["lr"], betas=tuple(BASELINE["betas"]),
                                              **{adam: True})
            self.scheduler = make_scheduler(self.optimizer, BASELINE, setup.steps_per_epoch, 200)
        self._batches = lambda epoch: batches(epoch_order(len(images), seed, epoch), batch_size)
        self._teacher_features = lambda: teacher_features(self.model, images, self.device, batch_size,
                                                          channels_last)
        self.cached = self._teacher_features() if cache else None
        self.source = FeatureSource(self.model, images, self.device, channels_last, self.cached)
        if gather == "index":  # the pre-change code: advanced indexing, a fresh tensor per step
            self.source = lambda idx: [f[idx] for f in self.cached]
        self._step = training_step
        self.autocast = torch.autocast("cpu", enabled=False)
        self.model.train()
        self._queue: list[torch.Tensor] = []
        self._epoch = 0

    def next_batch(self) -> torch.Tensor:
        while not self._queue:  # full batches only, so every timed step has the same size
            self._epoch += 1
            self._queue = [b for b in self._batches(self._epoch) if len(b) == self.batch_size]
        return self._queue.pop(0)

    def step(self) -> torch.Tensor:
        loss = self._step(self.model, self.optimizer, self.source(self.next_batch()), self.autocast)
        self.scheduler.step()
        return loss

    def build_cache(self) -> None:
        self._teacher_features()


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
def fvcore_fmas(image_size: int, backbones: list[str]) -> dict[str, dict[str, float]]:
    """Per-image fvcore counts (1 FMA = 1 FLOP) of teacher and student, ours and anomalib's."""
    from rd.complexity import _Student, count_flops
    from rd.method import build_rd

    out = {}
    x = torch.randn(1, 3, image_size, image_size)
    for bb in backbones:
        m = build_rd(bb, "none").eval()
        with torch.no_grad():
            f = m.teacher(x)
            out[bb] = {"teacher": count_flops(m.teacher, (x,))[0], "student": count_flops(_Student(m), tuple(f))[0]}
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
    if args.fused:
        r18f = Ours("resnet18", images, B, adam="fused")
        picof = Ours("convnext_pico", images, B, adam="fused")
        arms += [Arm("ours resnet18 + fused Adam", r18f.step), Arm("ours convnext_pico + fused Adam", picof.step)]
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


def cmd_levers(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.n_train, 3, args.image_size, args.image_size)
    B = args.batch_size
    variants = {
        "as committed (index_select, default Adam)": dict(),
        "advanced indexing f[idx] (old code)": dict(gather="index"),
        "channels_last (CPU)": dict(channels_last=True),
        "Adam foreach=True": dict(adam="foreach"),
        "Adam fused=True": dict(adam="fused"),
        "Adam fused=True + channels_last": dict(adam="fused", channels_last=True),
    }
    arms = []
    for bb in args.backbones:
        for name, kw in variants.items():
            o = Ours(bb, images, B, **kw)
            arms.append(Arm(f"{bb}: {name}", o.step, units=args.steps))
    interleave(arms, args.windows, args.warmup)
    print(f"\n### Levers, {args.image_size} px, batch {B}, {args.threads} threads "
          f"(median of {args.windows} interleaved windows of {args.steps} steps)\n")
    print(f"Machine: {machine_line(args.threads)}\n")
    rows = []
    for i, a in enumerate(arms):
        ref = arms[i - i % len(variants)]
        rows.append([a.name, a.median, spread(a), B / a.median, ref.median / a.median, paired(ref, a)])
    print(table(["arm", "s/step", "range", "img/s", "speed-up (ratio of medians)",
                 "speed-up (median of per-round ratios)"], rows))
    print("\nBit-exactness after 5 steps (same seed, same batches) vs the committed arm:")
    for bb in args.backbones:
        ref = None
        for name, kw in variants.items():
            torch.manual_seed(0)
            o = Ours(bb, images, B, **kw)
            for _ in range(5):
                o.step()
            params = [p.detach().contiguous() for p in o.model.parameters() if p.requires_grad]
            if ref is None:
                ref = params
                continue
            diff = max((a - b).abs().max().item() for a, b in zip(ref, params))
            same = all(torch.equal(a, b) for a, b in zip(ref, params))
            print(f"  {bb}: {name}: {'bit-identical' if same else f'max |Δw| {diff:.2e}'}")


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
    if args.fused:
        ours["ours resnet18 + fused Adam"] = Ours("resnet18", images, B, adam="fused")
    for o in ours.values():
        o.model.student = _labelled(o.model.student, "phase: student forward")
        o.source = _labelled(o.source, "phase: gather cached features")
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
        sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def cmd_startup(args: argparse.Namespace) -> None:
    py = sys.executable
    cases = {
        "python -c pass": "pass",
        "import torch": "import torch",
        "import torch, torchvision": "import torch, torchvision",
        "import torch, torch._dynamo": "import torch, torch._dynamo",
        "import torch, timm": "import torch, timm",
        "import rd.train": "import rd.train",
        "import rd.evaluate": "import rd.evaluate",
        "import rd.train, rd.evaluate, rd.data, rd.devices": "import rd.train, rd.evaluate, rd.data, rd.devices",
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(args.repeats):
        for name, code in cases.items():
            t = time.perf_counter()
            subprocess.run([py, "-c", code], check=True, cwd=ROOT, env=env)
            times[name].append(time.perf_counter() - t)
    t = []
    for _ in range(args.repeats):
        s = time.perf_counter()
        subprocess.run([py, "-m", "rd", "--help"], check=True, cwd=ROOT, env=env, capture_output=True)
        t.append(time.perf_counter() - s)
    times["python -m rd --help"] = t
    print(f"Machine: {machine_line(1)}\n")
    print(f"### Fixed per-job startup (fresh interpreter; median of {args.repeats}, interleaved)\n")
    print(table(["command", "median s", "range"],
                [[k, statistics.median(v), f"{min(v):.2f}–{max(v):.2f}"] for k, v in times.items()]))
    proc = subprocess.run([py, "-X", "importtime", "-c", "import rd.train, rd.evaluate"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, raw = line[len("import time:"):].split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2  # two spaces per nesting level
        if depth <= 1:  # what rd imports directly, and what those import
            rows.append([("  " * depth) + raw.strip(), int(cum_us) / 1e6])
    rows = [r for r in rows if r[1] >= args.min_s]
    print("\n`python -X importtime -c 'import rd.train, rd.evaluate'` (one run; cumulative s; modules over "
          f"{args.min_s} s; an indented row is imported by the next unindented one):\n")
    print(table(["module", "cumulative s"], rows))


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
    q.add_argument("--fused", action="store_true", help="also arms with Adam(fused=True) (a proposed change)")
    q.add_argument("--no-anomalib-data", action="store_true", help="skip the anomalib + its data path arm")
    q.set_defaults(fn=cmd_step)
    q = sub.add_parser("levers", help="side-by-side levers: channels_last, Adam foreach/fused, gather")
    common(q, windows=5, steps=2)
    q.add_argument("--backbones", nargs="+", default=["resnet18"])
    q.set_defaults(fn=cmd_levers)
    q = sub.add_parser("profile", help="torch.profiler top ops of ours and anomalib's step")
    common(q, windows=3, steps=2)
    q.add_argument("--top", type=int, default=12)
    q.add_argument("--fused", action="store_true")
    q.set_defaults(fn=cmd_profile)
    q = sub.add_parser("eval", help="evaluation time per test image")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    q.add_argument("--backbones", nargs="+", default=["resnet18", "convnext_pico"])
    q.add_argument("--repeats", type=int, default=3)
    q.set_defaults(fn=cmd_eval)
    q = sub.add_parser("startup", help="fixed per-job cost: interpreter + imports")
    q.add_argument("--repeats", type=int, default=5)
    q.add_argument("--min-s", type=float, default=0.1, help="importtime rows shown from this many seconds")
    q.set_defaults(fn=cmd_startup)
    args = p.parse_args(argv)
    print(f"command: {Path(sys.executable).name} benchmarks/bench_train.py {' '.join(sys.argv[1:])}", file=sys.stderr)
    args.fn(args)


if __name__ == "__main__":
    main()
