"""Train one RD run: (category, backbone, setting, seed) -> model.pt, history.csv, train.json.

Why it is shaped this way:
* The teacher is frozen and the paper uses no augmentation, so the teacher's features of the
  training set never change: they are computed once per run and reused every epoch (the same
  maths, a large saving). ``feature_cache=False`` recomputes them per step.
* The training split is decoded once into tensors; epochs only index into them.
* Data order comes from a generator seeded by (seed, epoch), so a run resumed from its
  checkpoint sees exactly the batches an uninterrupted run would have seen.
* The checkpoint (student + optimizer state, ~3x model.pt) is written after an epoch only once
  ``checkpoint_every`` seconds have passed since the last one: a default run's short jobs then
  write none, a long run loses at most about that much work when killed.
* ``Trainer`` is the loop itself (``step``, ``epoch``); the benchmarks time that object.
* ``model.pt``, ``train.json`` and ``history.csv`` are published as one set
  (``rd.files.output_set``), ``model.pt`` last, and only when training finished; a NaN/inf loss
  stops the run with a clear message and no model.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from rd import files
from rd.errors import RDError
from rd.method.loss import cosine_distillation_loss
from rd.method.inference import image_scores, predict, predict_from_features
from rd.method import RD, count_params, student_init_sha256
from rd.method.weights import RANDOM_TEACHER_INIT, teacher_recipe
from rd.params import CHECKPOINT_EVERY_S
from rd.optim import make_optimizer, make_scheduler, weight_decay_rule
from rd.run import TrainConfig, build_seeded, load_student, model_checkpoint

CHECKPOINT = "checkpoint.pt"


class DivergedError(RDError):
    """The training loss became NaN/inf: the learning rate is too high for this run (the lr
    selection records such a grid value as diverged instead of failing)."""

FEATURE_CACHE_LIMIT_BYTES = 4 * 1024**3


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's shuffled order, reproducible from (seed, epoch) alone."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Batches of ``order``; a trailing batch of one is dropped (BatchNorm cannot train on it)."""
    out = list(order.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@torch.no_grad()
def teacher_features(model: RD, images: torch.Tensor, device: torch.device, batch_size: int,
                     channels_last: bool) -> list[torch.Tensor]:
    """Teacher features of every image, computed once (eval mode, no grad).

    Written chunk by chunk into preallocated tensors (no list of chunks + ``torch.cat``: half
    the peak memory and one copy less).
    """
    out: list[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = model.teacher(x)
        if not out:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            out = [torch.empty((len(images), *f.shape[1:]), dtype=f.dtype, device=f.device, memory_format=fmt)
                   for f in feats]
        for dst, f in zip(out, feats):
            dst[start:start + len(f)] = f
    return out


class FeatureSource:
    """The teacher features of a batch of training-image indices.

    Cached: gathered with ``index_select`` into buffers allocated once per batch size (no
    fresh allocation per step). Not cached: the frozen teacher runs on the batch. The two
    give the same values (``tests/test_train.py``); the first is the paper's maths without
    its per-step teacher forward.
    """

    def __init__(self, model: RD, images: torch.Tensor, device: torch.device, channels_last: bool,
                 cached: list[torch.Tensor] | None) -> None:
        self.model, self.images, self.device = model, images, device
        self.channels_last, self.cached = channels_last, cached
        self._buffers: dict[int, list[torch.Tensor]] = {}

    def __call__(self, idx: torch.Tensor) -> list[torch.Tensor]:
        if self.cached is None:
            x = self.images[idx].to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model.teacher(x)
        n = len(idx)
        if n not in self._buffers:
            self._buffers[n] = [torch.empty_like(f[:n]) for f in self.cached]  # same layout as the cache
        idx = idx.to(self.cached[0].device, non_blocking=True)
        bufs = self._buffers[n]
        for f, buf in zip(self.cached, bufs):
            torch.index_select(f, 0, idx, out=buf)
        return bufs


def training_step(model: RD, optimizer: torch.optim.Optimizer, feats: Sequence[torch.Tensor],
                  autocast: Any) -> torch.Tensor:
    """One optimisation step of the student on teacher features; returns the detached loss.

    No host sync here (no ``.item()``, no branch on the loss): on a GPU the host can queue the
    next step while this one runs. Non-finite losses are caught once per epoch by ``train``.
    """
    with autocast:
        student = model.student(feats)
    loss = cosine_distillation_loss(feats, student)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def feature_bytes(model: RD, n: int, image_size: int) -> int:
    per_image = sum(c * (image_size // s) ** 2 for c, s in zip(model.teacher.channels, (4, 8, 16)))
    return 4 * per_image * n


def _progress(epoch: int, epochs: int, loss: float, lr: float, elapsed: float) -> None:
    eta = elapsed / epoch * (epochs - epoch)
    print(f"epoch {epoch}/{epochs}  loss {loss:.5f}  lr {lr:.2e}  elapsed {elapsed:.1f}s  ETA {eta:.1f}s",
          file=sys.stderr, flush=True)


def _eval_columns(model: RD, test: dict, cfg: TrainConfig, device: torch.device,
                  test_features: list[torch.Tensor] | None = None) -> dict[str, float]:
    from rd.metrics import image_auroc, pixel_auroc

    if test_features is not None:
        maps = predict_from_features(model, test_features, cfg.image_size, cfg.batch_size)
    else:
        maps = predict(model, test["images"], cfg.image_size, device, cfg.batch_size)
    labels = test["labels"].numpy()
    masks = test["masks"][:, 0].numpy()
    return {"image_auroc": image_auroc(image_scores(maps), labels),
            "pixel_auroc": pixel_auroc(maps, masks)}


CHECKPOINT_KEYS = ("identity", "epoch", "history", "student", "optimizer", "scheduler")


def _resume(path: os.PathLike, cfg: TrainConfig, model: RD, optimizer: torch.optim.Optimizer,
            scheduler: Any) -> tuple[list[dict[str, Any]], int] | None:
    """Load a checkpoint into model/optimizer/scheduler: (history, last epoch), None if it
    belongs to another configuration, RDError if it is damaged or does not fit."""
    ckpt = files.load_torch(path, "Checkpoint")
    if isinstance(ckpt, dict) and "identity" in ckpt and ckpt["identity"] != cfg.identity():
        print(f"ignoring {path}: it belongs to a different configuration (it will be replaced)", file=sys.stderr)
        return None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise RDError(f"Checkpoint {path} lacks the keys of a training checkpoint.", "")
    epoch, history = ckpt["epoch"], ckpt["history"]
    if not (isinstance(epoch, int) and 1 <= epoch < cfg.epochs and isinstance(history, list)
            and len(history) == epoch):
        raise RDError(f"Checkpoint {path} has an inconsistent epoch/history ({epoch!r}).", "")
    load_student(model, ckpt["student"], path)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise RDError(f"The optimizer state in checkpoint {path} does not fit ({exc}).", "") from exc
    return history, epoch


@dataclass
class TrainingSetup:
    """Everything a training loop needs, built as ``train`` builds it (benchmarks reuse it)."""

    model: RD
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    images: torch.Tensor
    device: torch.device
    channels_last: bool
    steps_per_epoch: int
    autocast: Any
    batch_size: int
    student_init_sha256: str = ""

    def build_feature_cache(self) -> list[torch.Tensor] | None:
        """The teacher's features of every training image, or None when they would not fit."""
        if feature_bytes(self.model, len(self.images), self.images.shape[-1]) > FEATURE_CACHE_LIMIT_BYTES:
            return None
        return teacher_features(self.model, self.images, self.device, self.batch_size, self.channels_last)


@dataclass
class EpochResult:
    """One epoch's per-step losses (float64, on the host) and the lr each step used."""

    losses: np.ndarray
    lrs: list[float]

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses))


class Trainer:
    """The training loop of one run: ``train`` runs it, and the benchmarks time it, so what a
    benchmark measures is the real loop by construction.

    ``step(idx)``: one batch (teacher features -> ``training_step`` -> scheduler step), no host
    sync. ``epoch(n)``: every batch of epoch ``n`` in the order ``epoch_order`` gives, then one
    host sync for all its losses; a NaN/inf loss raises ``DivergedError``.
    """

    def __init__(self, setup: TrainingSetup, seed: int, cached: list[torch.Tensor] | None) -> None:
        self.setup, self.seed = setup, seed
        self.model, self.optimizer, self.scheduler = setup.model, setup.optimizer, setup.scheduler
        self.source = FeatureSource(setup.model, setup.images, setup.device, setup.channels_last, cached)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """The index batches of ``epoch`` (a function of (seed, epoch) alone)."""
        return batches(epoch_order(len(self.setup.images), self.seed, epoch), self.setup.batch_size)

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimisation step on the images ``idx``; returns the detached loss (no sync)."""
        loss = training_step(self.model, self.optimizer, self.source(idx), self.setup.autocast)
        self.scheduler.step()
        return loss

    def epoch(self, n: int) -> EpochResult:
        """Train epoch ``n``; one host sync at its end checks every loss."""
        losses: list[torch.Tensor] = []
        lrs: list[float] = []
        for idx in self.batches(n):
            lrs.append(self.scheduler.get_last_lr()[0])
            losses.append(self.step(idx))
        values = torch.stack(losses).cpu().numpy().astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            # before anything of this epoch is saved: no checkpoint, no model
            raise DivergedError(f"Training loss became {values[bad[0]]} at epoch {n} (lr {lrs[bad[0]]:.2e}); "
                                "no model was written.",
                                "lower the learning rate in this setting, or check the input images.")
        return EpochResult(values, lrs)


def prepare_training(cfg: TrainConfig, images: torch.Tensor, device: torch.device) -> TrainingSetup:
    """The run's seeded network, optimizer (weight decay grouped) and per-step schedule."""
    channels_last = device.type == "cuda"
    model = build_seeded(cfg)
    init_sha = student_init_sha256(model)  # before any checkpoint is loaded into it
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(student_modules(model), cfg.setting)
    steps_per_epoch = len(batches(torch.arange(len(images)), cfg.batch_size))
    scheduler = make_scheduler(optimizer, cfg.setting, steps_per_epoch, cfg.epochs)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else torch.autocast("cpu", enabled=False)
    return TrainingSetup(model, optimizer, scheduler, images, device, channels_last, steps_per_epoch, autocast,
                         cfg.batch_size, init_sha)


def student_modules(model: RD) -> torch.nn.Module:
    """The trainable part (bottleneck + decoder) as one module, for named parameter groups."""
    return torch.nn.ModuleDict({"bottleneck": model.bottleneck, "decoder": model.decoder})


def run_record(model: RD, cfg: TrainConfig, init_sha256: str = "") -> dict[str, Any]:
    """What defines the run's network and recipe, recorded in train.json for the fairness audit."""
    s = model.spec.student
    weights = model.teacher_weights
    recipe = teacher_recipe(weights)
    return {
        "student_output": s.output, "student_init_sha256": init_sha256 or student_init_sha256(model),
        "projection": model.spec.projection, "projection_channels": model.spec.projection_channels,
        "projection_seed": model.spec.projection_seed,
        "teacher_recipe": recipe["recipe"], "teacher_top1": recipe["top1"],
        "teacher_recipe_words": recipe["words"], "teacher_recipe_source": recipe["source"],
        "backbone": cfg.backbone_name, "model": cfg.backbone,
        "teacher": weights.to_dict() if weights is not None else None,
        "random_teacher_init": RANDOM_TEACHER_INIT if weights is not None and weights.kind == "random" else None,
        "student": cfg.student, "student_family": s.family, "student_reference": s.reference,
        "student_init": ("official RD4AD: Kaiming normal (fan-out) convs, norms weight 1 / bias 0"
                         if s.family == "resnet" else
                         "ConvNeXt: truncated normal (std 0.02), layer scale 1e-6; fusion convs as RD4AD"),
        "weight_decay_rule": weight_decay_rule(cfg.setting),
    }


def _stage_evaluation(model: RD, cfg: TrainConfig, out: Path, device: torch.device, *, test: dict,
                      test_features: list[torch.Tensor] | None, images: torch.Tensor,
                      train_features: list[torch.Tensor] | None, failure_cases: int) -> bool:
    """Evaluate the just-trained network in this process into the run's staging folder
    (``rd.staging``), reusing the test split and the teacher features already computed.

    A failure here (a test set ``rd evaluate`` would refuse, a full disk) leaves nothing
    staged and is only a warning: the ``evaluate`` step then evaluates in full and reports it.
    """
    from rd import staging
    from rd.evaluate import OUTPUTS, evaluate_model

    t0 = time.perf_counter()
    staging.discard(out)
    try:
        stage = staging.stage_dir(out)
        stage.mkdir()
        evaluate_model(model, cfg, stage, data_root=cfg.data_root, category=cfg.category,
                       dataset=cfg.dataset, device=device, failure_cases=failure_cases, test=test,
                       test_features=test_features, train_images=images, train_features=train_features,
                       t0=t0)
        options = staging.evaluation_options(data_root=cfg.data_root, category=cfg.category, dataset=cfg.dataset,
                                             failure_cases=failure_cases, device=cfg.device)
        staging.write_record(out, files=OUTPUTS, options=options, model_path=out / "model.pt")
    except (RDError, OSError) as exc:
        staging.discard(out)
        warnings.warn(f"the run's evaluation was not staged ({exc}); `rd evaluate` evaluates it in full.",
                      stacklevel=2)
        return False
    return True


def train(cfg: TrainConfig, out_dir: str | os.PathLike, *, stage_evaluation: bool = False,
          failure_cases: int = 4, checkpoint_every: float = CHECKPOINT_EVERY_S) -> dict[str, Any]:
    """Train one run into ``out_dir`` (resuming from its checkpoint if one matches).

    ``checkpoint_every``: write the resume checkpoint after an epoch once this many seconds
    have passed since the last one (or the start); 0 = after every epoch, never after the last.
    It only decides how much work a killed run loses, never a number, so it is no part of the
    run's identity.

    ``stage_evaluation``: also evaluate the trained network in this process and stage the
    outputs for ``rd evaluate`` to publish (``rd.staging``); ``failure_cases`` as there.
    """
    from rd import staging
    from rd.data import good_split, load_split
    from rd.devices import resolve_device

    out = files.ensure_writable_dir(out_dir)
    staging.discard(out)  # an earlier staged evaluation belongs to the model this run replaces
    # left by a killed earlier attempt (kill -9, power loss)
    stale = files.clear_stale_temporaries(out, (CHECKPOINT, "model.pt", "train.json", "history.csv"))
    if stale:
        warnings.warn(f"removed {len(stale)} temporary file(s) an interrupted earlier run left in {out}.",
                      stacklevel=2)
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise RDError(f"epochs={cfg.epochs}, batch_size={cfg.batch_size}: need epochs >= 1 and batch_size >= 2.",
                      "fix epochs/batch_size in the config.")
    torch.set_num_threads(max(1, cfg.threads))
    # The held-out good images (threshold, lr selection) are never loaded here.
    held_out = good_split(cfg.dataset, cfg.data_root, cfg.category, cfg.validation_fraction, cfg.data_seed)
    train_set = load_split(cfg.data_root, cfg.category, "train", cfg.image_size, dataset=cfg.dataset,
                           validation_fraction=cfg.validation_fraction, seed=cfg.data_seed)
    test_set = (load_split(cfg.data_root, cfg.category, "test", cfg.image_size, dataset=cfg.dataset)
                if cfg.eval_every or stage_evaluation else None)
    images = train_set["images"]
    if len(images) < 2:
        raise RDError(f"Only {len(images)} training image(s) in the {cfg.dataset} train split of "
                      f"{cfg.data_root}/{cfg.category}.",
                      "RD needs at least two good training images; add more.")

    with resolve_device(cfg.device) as lease:
        device = torch.device(lease.device)
        if cfg.bf16 and device.type != "cuda":
            raise RDError("bf16 autocast was requested on the CPU.", "use it with device cuda only.")
        setup = prepare_training(cfg, images, device)
        model, optimizer, scheduler = setup.model, setup.optimizer, setup.scheduler
        channels_last, steps_per_epoch = setup.channels_last, setup.steps_per_epoch

        history: list[dict[str, Any]] = []
        start_epoch = 1
        ckpt_path = out / CHECKPOINT
        if ckpt_path.exists():
            try:
                resumed = _resume(ckpt_path, cfg, model, optimizer, scheduler)
            except RDError as exc:
                # A checkpoint only saves time: the run is reproducible from (seed, epoch), so
                # starting over gives the same model. Set the damaged file aside (never read
                # again, kept for inspection) instead of failing every retry of the job.
                damaged = ckpt_path.with_name(ckpt_path.name + ".damaged")
                os.replace(ckpt_path, damaged)
                warnings.warn(f"{exc.problem} Moved it to {damaged}; training starts again from epoch 1.",
                              stacklevel=2)
                setup = prepare_training(cfg, images, device)  # fresh: the failed load may have written into it
                model, optimizer, scheduler = setup.model, setup.optimizer, setup.scheduler
                resumed = None
            if resumed is not None:
                history, last = resumed
                start_epoch = last + 1
                print(f"resuming from {ckpt_path} after epoch {last}", file=sys.stderr)

        cached = setup.build_feature_cache() if cfg.feature_cache else None
        trainer = Trainer(setup, cfg.seed, cached)
        # The teacher's features of the test images, once per run: every eval_every evaluation
        # and the staged final evaluation feed the student from them.
        test_feats = None
        if test_set is not None and cfg.feature_cache and feature_bytes(model, len(test_set["images"]), cfg.image_size) \
                <= FEATURE_CACHE_LIMIT_BYTES:
            test_feats = teacher_features(model, test_set["images"], device, cfg.batch_size, channels_last)

        t_start = time.perf_counter() - (history[-1]["elapsed"] if history else 0.0)
        last_save = time.perf_counter()
        model.train()
        for epoch in range(start_epoch, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            result = trainer.epoch(epoch)
            row: dict[str, Any] = {"epoch": epoch, "loss": result.loss,
                                   "lr": optimizer.param_groups[0]["lr"],
                                   "seconds": time.perf_counter() - t_epoch,
                                   "elapsed": time.perf_counter() - t_start}
            if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                model.eval()
                row.update(_eval_columns(model, test_set, cfg, device, test_feats))
                model.train()
            history.append(row)
            _progress(epoch, cfg.epochs, row["loss"], row["lr"], row["elapsed"])
            # after the last epoch model.pt follows at once and the checkpoint goes
            if epoch < cfg.epochs and time.perf_counter() - last_save >= checkpoint_every:
                files.save_torch(ckpt_path, {"identity": cfg.identity(), "epoch": epoch, "history": history,
                                          "student": model.student_state_dict(),
                                          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
                last_save = time.perf_counter()

        model.eval()
        summary = {
            **{k: v for k, v in asdict(cfg).items() if k in ("category", "backbone", "weights", "seed",
                                                             "image_size", "epochs", "batch_size")},
            "setting": cfg.setting_name, "setting_params": cfg.setting,
            "lr_selection": cfg.lr_selection,
            # What training saw of train/good, and what it did not (rd.data.holdout).
            "validation_fraction": cfg.validation_fraction, "n_train_images": int(len(images)),
            "held_out": {k: v for k, v in held_out.record().items() if k != "files"},
            **run_record(model, cfg, setup.student_init_sha256),
            # What the fairness audit compares, recorded rather than assumed.
            "preprocessing": f"resize to {cfg.image_size} px (bilinear, antialias; masks nearest), ImageNet mean/std",
            "augmentation": "none",
            "loss": "RD cosine loss: sum over 3 stages of 1 − cos(flattened teacher, student)",
            "decoder": f"de_{model.spec.student.family} (OCBE {model.spec.student.block}×{model.spec.student.oce_depth}, "
                       f"decoder depths {'/'.join(map(str, model.spec.student.decoder_depths))})",
            "train_seconds": history[-1]["elapsed"], "peak_mem_mb": peak_memory_mb(device),
            "device": str(device), "threads": cfg.threads, "final_loss": history[-1]["loss"],
            "feature_cache": cached is not None, "steps": steps_per_epoch * cfg.epochs,
            "params": {"teacher": count_params(model.teacher), "bottleneck": count_params(model.bottleneck),
                       "decoder": count_params(model.decoder),
                       "student": count_params(model.bottleneck) + count_params(model.decoder)},
        }
        columns = ["epoch", "loss", "lr", "seconds", "elapsed", "image_auroc", "pixel_auroc"]
        with files.output_set(out / "model.pt"):   # one set, model.pt (what evaluate needs) last
            files.write_csv(out / "history.csv", pd.DataFrame(history).reindex(columns=columns))
            files.write_json(out / "train.json", summary)
            files.save_torch(out / "model.pt", model_checkpoint(model, cfg))
        ckpt_path.unlink(missing_ok=True)
        if stage_evaluation:
            _stage_evaluation(model, cfg, out, device, test=test_set, test_features=test_feats, images=images,
                              train_features=cached, failure_cases=failure_cases)
    return summary
