"""Choose a setting's learning rate on held-out good images, never on test labels.

A config setting with ``lr_grid: [...]`` gets one selection run per grid value (the workflow's
``lr_select`` rule, on the first category and the first seed): the arm is trained by the normal
training code (:func:`rd.train.train`) on its training split for ``lr_select_epochs`` epochs at
that lr, and its mean distillation loss (the training loss, per image) is measured on the
held-out good images (``rd.data.holdout``), which training never saw. ``gather`` then picks
the lr with the lowest held-out loss (ties: the smaller lr; a run whose loss diverged counts as
infinitely bad) and writes ``results/lr/<backbone>/<setting>.json``; every run of the arm takes
that lr (``python -m rd train --lr-selection FILE``).

Why the held-out loss: it is what the student is trained to minimise, measured where it cannot
be fitted by memorising, and it needs no defect and no label.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from rd import files
from rd.errors import RDError
from rd.method.loss import cosine_distillation_loss
from rd.run import TrainConfig

RULE = "lowest mean distillation loss on the held-out good images (ties: the smaller lr)"
SELECTION_KEYS = ("grid", "losses", "chosen")


@torch.no_grad()
def held_out_loss(model: Any, images: torch.Tensor, device: torch.device | str, batch_size: int) -> float:
    """Mean over ``images`` of RD's distillation loss (sum over stages of 1 - cos), eval mode."""
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        teacher, student = model(x)
        total += float(cosine_distillation_loss(teacher, student)) * len(x)
        n += len(x)
    return total / n


def selection_run(cfg: TrainConfig, lr: float, epochs: int, out: str | os.PathLike) -> dict[str, Any]:
    """Train ``cfg`` at ``lr`` for ``epochs`` and write its held-out loss to ``out`` (JSON).

    The training folder (``<out without .json>.train/``, resumable like any run) is removed once
    the JSON is written. A diverged run is recorded (``held_out_loss`` null, ``diverged`` true).
    """
    from rd.data import good_split, load_split
    from rd.devices import resolve_device
    from rd.run import load_model
    from rd.train import DivergedError, train

    if cfg.validation_fraction <= 0:
        raise RDError("The lr selection needs held-out good images, but validation_fraction is 0.",
                      "pass --validation-fraction > 0 (e.g. 0.1), or drop lr_grid from the setting.")
    lr = float(lr)
    out = Path(out)
    part = good_split(cfg.dataset, cfg.data_root, cfg.category, cfg.validation_fraction, cfg.data_seed)
    run_cfg = replace(cfg, setting={**cfg.setting, "lr": lr}, epochs=int(epochs), eval_every=0, lr_selection=None)
    work = out.with_name(out.name.removesuffix(".json") + ".train")
    record: dict[str, Any] = {
        "lr": lr, "epochs": int(epochs), "backbone": cfg.backbone_name, "setting": cfg.setting_name,
        "category": cfg.category, "seed": cfg.seed, "rule": RULE,
        "held_out": {k: v for k, v in part.record().items() if k != "files"},
    }
    try:
        summary = train(run_cfg, work)
    except DivergedError as exc:
        record.update(held_out_loss=None, diverged=True, train_final_loss=None, note=exc.problem)
    else:
        images = load_split(cfg.data_root, cfg.category, "held_out", cfg.image_size, dataset=cfg.dataset,
                            validation_fraction=cfg.validation_fraction, seed=cfg.data_seed)["images"]
        model, _ = load_model(work / "model.pt")
        with resolve_device(cfg.device) as lease:
            loss = held_out_loss(model.to(lease.device), images, lease.device, cfg.batch_size)
        record.update(held_out_loss=loss, diverged=not math.isfinite(loss),
                      train_final_loss=summary["final_loss"])
    files.write_json(out, record)
    shutil.rmtree(work, ignore_errors=True)
    return record


def _loss_key(rec: dict[str, Any]) -> tuple[float, float]:
    loss = rec.get("held_out_loss")
    bad = loss is None or not math.isfinite(float(loss))
    return (math.inf if bad else float(loss), float(rec["lr"]))


def gather(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """The selection of one arm from its per-lr JSONs: grid, every held-out loss, the chosen lr."""
    fix = "rerun the arm's lr_select jobs (delete results/lr/<backbone>/<setting>/ first)."
    records = [files.read_json_object(p, "Lr selection run", fix) for p in paths]
    if len(records) < 2:
        raise RDError(f"An lr selection needs at least 2 runs, got {len(records)}.", "give lr_grid 2 or more values.")
    for path, rec in zip(paths, records):
        if "lr" not in rec or "held_out_loss" not in rec:
            raise RDError(f"Lr selection run {path} lacks lr/held_out_loss.", fix)
    same = ("backbone", "setting", "category", "seed", "epochs")
    for key in same:
        values = {str(r.get(key)) for r in records}
        if len(values) > 1:
            raise RDError(f"The lr selection runs disagree on {key} ({', '.join(sorted(values))}).", fix)
    lrs = [float(r["lr"]) for r in records]
    if len(set(lrs)) != len(lrs):
        raise RDError(f"The lr selection runs repeat a learning rate ({lrs}).", fix)
    records.sort(key=lambda r: float(r["lr"]))
    if all(_loss_key(r)[0] == math.inf for r in records):
        tried = ", ".join(f"{float(r['lr']):g}" for r in records)
        raise RDError(f"Every lr of the selection diverged ({tried}).",
                      "use smaller learning rates in lr_grid.")
    best = min(records, key=_loss_key)
    first = records[0]
    result = {
        "backbone": first.get("backbone"), "setting": first.get("setting"), "category": first.get("category"),
        "seed": first.get("seed"), "epochs": first.get("epochs"), "rule": RULE,
        "grid": [float(r["lr"]) for r in records],
        "losses": [None if _loss_key(r)[0] == math.inf else float(r["held_out_loss"]) for r in records],
        "chosen": float(best["lr"]),
        "held_out": first.get("held_out"),
    }
    files.write_json(out, result)
    return result


def read_selection(path: str | os.PathLike, backbone: str, setting: str) -> dict[str, Any]:
    """The gathered selection for one arm (``--lr-selection``), checked to be that arm's."""
    fix = "pass the arm's own results/lr/<backbone>/<setting>.json (rerun the workflow to make it)."
    data = files.read_json_object(path, "Lr selection", fix)
    try:
        grid, losses, chosen = [float(v) for v in data["grid"]], list(data["losses"]), float(data["chosen"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RDError(f"Lr selection {path} lacks grid/losses/chosen.", fix) from exc
    if chosen not in grid or len(losses) != len(grid):
        raise RDError(f"Lr selection {path} is inconsistent (chosen {chosen} not in grid {grid}, or one loss "
                      "per grid value missing).", fix)
    for key, want in (("backbone", backbone), ("setting", setting)):
        if data.get(key) is not None and str(data[key]) != want:
            raise RDError(f"Lr selection {path} belongs to {key} {data[key]!r}, not {want!r}.", fix)
    return {"grid": grid, "losses": losses, "chosen": chosen, "rule": data.get("rule", RULE),
            "epochs": data.get("epochs"), "category": data.get("category"), "seed": data.get("seed"),
            "file": str(path)}
