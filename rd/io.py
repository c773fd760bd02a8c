"""Atomic output: a result file either exists complete or not at all.

Every writer goes through a temporary file in the target's folder and ``os.replace``,
so an interrupted job never leaves a half-written file that a later step would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from rd.errors import RDError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RDError(f"Cannot create output folder {path}: {exc.strerror}.",
                      "choose an output path you can write to, or fix its permissions.") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise RDError(f"Output folder {path} is not writable.",
                      "choose an output path you can write to, or fix its permissions.")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            # mkstemp makes 0600 files; results on shared clusters should follow the umask like any file.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
            os.replace(tmp_path, path)
        except OSError as exc:  # full disk, quota, file-size limit, I/O error: name the file, no traceback
            raise write_failed(path, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_failed(path: str | os.PathLike, exc: BaseException) -> RDError:
    """The one-line error for an output that could not be written (the earlier version, if any, is kept)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc).splitlines() or [""])[0][:160]
    return RDError(f"Cannot write {path}: {reason or type(exc).__name__}; nothing was replaced.",
                   "the disk may be full or over quota (check `df -h` / `quota`): free space or choose another "
                   "output folder, then rerun (training resumes from its last checkpoint).")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def write_csv(path: str | os.PathLike, frame: "Any") -> None:
    """Write a pandas DataFrame atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # torch's C++ writer reports a failed write (full disk, ...) this way
            raise write_failed(path, exc) from exc


def load_torch(path: str | os.PathLike) -> Any:
    """Load a checkpoint with ``weights_only=True``: a pickle that would run code is refused."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise RDError(f"Checkpoint {path} does not exist.", "check the path, or rerun the step that writes it.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RDError(f"Refusing to load {path}: it holds objects beyond tensors and plain data "
                      f"({str(exc).splitlines()[0][:160]}).",
                      "load only checkpoints written by this tool or plain state dicts "
                      "(safetensors is safest).") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise RDError(f"Cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}.",
                      "the file is corrupt or truncated; delete it and rerun the step that writes it.") from exc


def read_table(path: str | os.PathLike, what: str, command: str, required: "list[str]",
               text_columns: "set[str]") -> "Any":
    """Read a CSV this tool wrote: text columns kept verbatim (a category named ``NA`` stays
    ``NA``), the rest numeric; a missing file or column names the ``command`` that writes it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise RDError(f"{what} {path} does not exist.", f"run `python -m rd {command}` first.")
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RDError(f"Cannot read {what.lower()} {path}: {exc}.", f"rerun `python -m rd {command}`.") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RDError(f"{what} {path} lacks the column(s) {', '.join(missing)}.",
                      f"it was not written by `python -m rd {command}`; rerun that step.")
    for col in frame.columns:
        if col not in text_columns:
            frame[col] = pd.to_numeric(frame[col].replace({"": None}), errors="coerce")
    return frame
