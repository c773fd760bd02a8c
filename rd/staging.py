"""Evaluation staged by the training process, published by ``rd evaluate`` without torch.

Why: a run's evaluation needs the trained network, the teacher and the test images, and all
three are in memory at the end of ``rd train``. Evaluating there saves a second process that
would spend most of its time importing torch/timm and rebuilding the model. The workflow keeps
its ``evaluate`` job per run (so a change of evaluation options re-evaluates without
retraining): that job calls :func:`publish`, which moves the staged files into place when they
were made with the same options, the same ``model.pt`` (sha256) and the same evaluation code;
otherwise ``rd evaluate`` evaluates in full.

Only the standard library and :mod:`rd.files` here: publishing must stay a sub-second command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

from rd.files import file_sha256, write_json

STAGE_DIR = ".evaluation-staged"   # inside the run folder, next to model.pt
RECORD = "staged.json"             # written last: its presence means the staged files are complete
RECORD_FORMAT = "rd-staged-evaluation/1"
# The modules whose code decides the evaluation's numbers and files: staged outputs made by
# other code are not published (rd.evaluate then evaluates afresh).
EVALUATION_CODE = ("evaluate.py", "metrics.py", "method/inference.py", "method/anomaly_map.py", "use/thresholds.py",
                   "staging.py")


def evaluation_options(*, data_root: str | os.PathLike, category: str, dataset: str | None, failure_cases: int,
                       device: str) -> dict[str, Any]:
    """The options that change an evaluation's outputs (threads do not: same numbers to 1e-6).

    ``data_root`` is resolved so ``data/x`` and ``./data/x`` compare equal; ``dataset`` None
    (evaluate's default) means the dataset the run was trained on.
    """
    return {"data_root": os.path.realpath(os.fspath(data_root)), "category": str(category),
            "dataset": None if dataset is None else str(dataset), "failure_cases": int(failure_cases), "device": str(device)}


def code_fingerprint() -> str:
    """sha256 over the source of the evaluation modules (read as text, nothing imported)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in EVALUATION_CODE:
        h.update(name.encode())
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(b"<missing>")
    return h.hexdigest()


def stage_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STAGE_DIR


def discard(run_dir: str | os.PathLike) -> None:
    """Remove a run's staged evaluation (a stale one from an earlier training, or a partial one)."""
    shutil.rmtree(stage_dir(run_dir), ignore_errors=True)


def write_record(run_dir: str | os.PathLike, *, files: Sequence[str], options: dict[str, Any],
                 model_path: str | os.PathLike) -> Path:
    """Mark the staged ``files`` (already written into :func:`stage_dir`) as complete.

    ``files`` is in publishing order; ``metrics.json`` belongs last (its presence marks a
    complete evaluation in the run folder).
    """
    path = stage_dir(run_dir) / RECORD
    write_json(path, {"format": RECORD_FORMAT, "files": list(files), "options": options,
                      "model_sha256": file_sha256(model_path), "code_sha256": code_fingerprint()})
    return path


def _mismatch(record: Any, stage: Path, model_path: Path, options: dict[str, Any]) -> str | None:
    """Why the staged evaluation cannot be published, or None when it can."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return "its record is from another version"
    files = record.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f and os.sep not in f
                                                          and f not in (".", "..") for f in files):
        return "its record lists no files"
    staged_options = record.get("options")
    if not isinstance(staged_options, dict):
        return "its record has no options"
    wanted = dict(options)
    if wanted.get("dataset") is None:  # evaluate's default: the dataset the run was trained on
        wanted["dataset"] = staged_options.get("dataset")
    if staged_options != wanted:
        diff = sorted(k for k in set(wanted) | set(staged_options) if wanted.get(k) != staged_options.get(k))
        return f"it was made with other options ({', '.join(diff)})"
    if record.get("code_sha256") != code_fingerprint():
        return "the evaluation code changed since"
    missing = [f for f in files if not (stage / f).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    if record.get("model_sha256") != file_sha256(model_path):
        return f"{model_path} is not the model it evaluated"
    return None


def publish(model_path: str | os.PathLike, out_dir: str | os.PathLike, options: dict[str, Any]) -> bool:
    """Move the staged evaluation of ``model_path``'s run into ``out_dir``; False (nothing
    changed) when there is none, or it does not match the options, the model or the code.

    Only into the model's own folder (a rename, no copy). ``metrics.json`` goes first out of
    the way and last into place, as a full evaluation writes it. Files are touched on the way,
    so they are newer than ``model.pt`` for Snakemake.
    """
    model_path = Path(model_path)
    run_dir = model_path.parent
    stage = stage_dir(run_dir)
    record_path = stage / RECORD
    if not record_path.is_file():
        return False
    if os.path.realpath(out_dir) != os.path.realpath(run_dir):
        return False
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        why = _mismatch(record, stage, model_path, options)
    except (OSError, ValueError) as exc:
        why = f"its record is unreadable ({exc})"
    if why is not None:
        warnings.warn(f"not using the evaluation staged by training in {stage}: {why}; evaluating afresh.",
                      stacklevel=2)
        return False
    out = Path(out_dir)
    files = record["files"]
    if "metrics.json" in files:
        (out / "metrics.json").unlink(missing_ok=True)
        files = [f for f in files if f != "metrics.json"] + ["metrics.json"]
    for name in files:
        os.replace(stage / name, out / name)
        os.utime(out / name)
    discard(run_dir)
    return True
