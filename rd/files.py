"""Atomic output: a result file either exists complete or not at all.

Every writer goes through a temporary file in the target's folder and ``os.replace``,
so an interrupted job never leaves a half-written file that a later step would trust. The
temporary file is flushed to disk (``fsync``) before the rename and the folder after it, so a
power loss cannot leave a zero-length result under the final name either. Temporary files are
named ``.<name>.<random>.tmp``; one left by a killed process (kill -9, power loss) is removed
by :func:`clear_stale_temporaries` when its job starts again.

A command with several outputs publishes them as a set (:func:`output_set`): inside the block
every write goes to its temporary only; on success the temporaries are renamed into place with
the file that marks completion (``model.pt``, ``metrics.json``, ``predictions.csv``, the
export's ``.json``) renamed last, after the old marker was removed. A failure while writing
leaves the earlier set untouched; a failure while renaming removes the whole set. So a
completion marker is never next to outputs of another attempt.

Reading goes through guarded loaders too: :func:`load_torch` turns every way a ``.pt`` file
can be damaged (empty, truncated, another kind of file, a pickle that would run code) into
one :class:`RDError` naming the file and what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import errno
import glob
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

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
    """Yield a temporary path next to ``path``; move it into place only on success (inside an
    :func:`output_set`, it is handed to the set instead, which renames it with the others)."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    outputs = _ACTIVE_SET.get()
    staged = False
    try:
        try:
            yield tmp_path
            # mkstemp makes 0600 files; results on shared clusters should follow the umask like any file.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
            _fsync(tmp_path)
            if outputs is not None:
                outputs.stage(path, tmp_path)
                staged = True
                return
            os.replace(tmp_path, path)
            _fsync(path.parent, directory=True)
        except OSError as exc:  # full disk, quota, file-size limit, I/O error: name the file, no traceback
            raise write_failed(path, exc) from exc
    finally:
        if not staged and tmp_path.exists():
            tmp_path.unlink()


class OutputSet:
    """The outputs of one command, staged as temporaries and published together (see
    :func:`output_set`)."""

    def __init__(self, markers: Sequence[Path]) -> None:
        self.markers = [Path(m) for m in markers]
        self._staged: dict[Path, Path] = {}    # final path -> its complete temporary, in write order

    def stage(self, path: Path, tmp: Path) -> None:
        """Keep ``tmp`` (complete and flushed) to become ``path`` when the set is published."""
        earlier = self._staged.pop(Path(path), None)
        if earlier is not None:
            earlier.unlink(missing_ok=True)
        self._staged[Path(path)] = tmp

    def staged(self, path: str | os.PathLike) -> Path:
        """Where ``path``'s content is now: its temporary until the set is published."""
        return self._staged.get(Path(path), Path(path))

    def discard(self) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()

    def publish(self) -> None:
        """Old markers out, then every other output, then the markers: a marker present means
        every output beside it comes from the same attempt."""
        order = [p for p in self._staged if p not in self.markers] + [p for p in self.markers if p in self._staged]
        in_the_way = next((p for p in order if p.is_dir() and not p.is_symlink()), None)
        if in_the_way is not None:   # before anything changes: the earlier set stays as it was
            self.discard()
            raise write_failed(in_the_way, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        current = self.markers[0] if self.markers else None
        try:
            for marker in self.markers:
                current = marker
                marker.unlink(missing_ok=True)
            for path in order:
                current = path
                os.replace(self._staged[path], path)
            for folder in dict.fromkeys(p.parent for p in order):
                _fsync(folder, directory=True)
        except BaseException as exc:   # a rename failed, or Ctrl-C between two renames
            # The old marker is gone: remove the rest of the set too (new and old files alike),
            # so that no mix of two attempts is left to look like a result.
            for path in order:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.discard()
            if not isinstance(exc, OSError):
                raise
            raise write_failed(current or order[0], exc, replaced=False, removed=True) from exc
        self._staged.clear()


_ACTIVE_SET: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar("rd_output_set", default=None)


@contextlib.contextmanager
def output_set(*markers: str | os.PathLike) -> Iterator[OutputSet]:
    """Publish every file written in the block as one set, ``markers`` (the files that mark
    completion) last; nothing is published if the block fails."""
    if _ACTIVE_SET.get() is not None:
        raise RuntimeError("output sets do not nest")
    outputs = OutputSet([Path(m) for m in markers])
    for marker in outputs.markers:   # say it before the work, not after it
        if marker.is_dir() and not marker.is_symlink():
            raise write_failed(marker, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), replaced=False)
    token = _ACTIVE_SET.set(outputs)
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    finally:
        _ACTIVE_SET.reset(token)
    outputs.publish()


def staged(path: str | os.PathLike) -> Path:
    """``path``, or its complete temporary while an output set that holds it is unpublished."""
    outputs = _ACTIVE_SET.get()
    return outputs.staged(path) if outputs is not None else Path(path)


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush ``path``'s data (or a folder's entries) to the disk; a file system that cannot
    (some network mounts refuse fsync on folders) is not an error."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not directory or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def clear_stale_temporaries(folder: str | os.PathLike, names: "Sequence[str]",
                            suffixes: "Sequence[str]" = ()) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files a killed writer of ``folder/<name>`` left
    (kill -9, power loss), for each of the command's output ``names`` and, for outputs whose
    names vary (predict's figures), for every name ending in one of ``suffixes``.

    Only the command's own outputs: another job writing other files into the same folder keeps
    its temporaries. Call it when the command starts, before it writes.
    """
    folder = Path(folder)
    removed = []
    patterns = [f".{glob.escape(name)}.*.tmp" for name in names] + [f".*{glob.escape(s)}.*.tmp" for s in suffixes]
    for pattern in patterns:
        for tmp in folder.glob(pattern):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


_WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space (check `df -h`) or choose another output folder",
    errno.EDQUOT: "your disk quota is used up: free space (check `quota`) or choose another output folder",
    errno.EFBIG: "the file is larger than this file system or your file-size limit allows (`ulimit -f`): "
                 "raise the limit or choose another output folder",
    errno.EROFS: "the file system is mounted read-only: choose another output folder",
    errno.EACCES: "you may not write there: fix the folder's permissions or choose another output folder",
    errno.EPERM: "you may not write there: fix the folder's permissions or choose another output folder",
    errno.EISDIR: "a folder has the output's name: move it away or choose another output path",
    errno.ENOENT: "its folder disappeared while writing: check that nothing else deletes the output folder",
    errno.EIO: "the disk reported an I/O error: check the disk (`dmesg`) or choose another output folder",
}


def write_failed(path: str | os.PathLike, exc: BaseException, replaced: bool = True,
                 removed: bool = False) -> RDError:
    """The one-line error for an output that could not be written (the earlier version, if any,
    is kept; ``removed``: the command's outputs were removed instead, so that none is left
    beside outputs of another attempt), with the fix of its actual cause (full disk, ...)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc).splitlines() or [""])[0][:160]
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None and "file write failed" in str(exc):   # torch's writer hides the errno
        fix = ("the write failed underneath torch; the disk may be full or over quota (check `df -h` / `quota`): "
               "free space or choose another output folder")
    else:
        fix = _WRITE_FIXES.get(code, "check the disk and the output folder, or choose another output folder")
    tail = ("; the outputs of this attempt were removed." if removed else
            "; nothing was replaced." if replaced else ".")
    return RDError(f"Cannot write {path}: {reason or type(exc).__name__}{tail}",
                   f"{fix}, then rerun (training resumes from its last checkpoint).")


# What the file system can say that is the user's to fix, not a bug (anything else keeps its traceback).
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG, errno.EIO,
                         errno.EEXIST, errno.EMFILE, errno.ENFILE, errno.EXDEV, errno.ENOTEMPTY})
_ACCESS_FIXES = {
    errno.ENOTDIR: "a file stands where a folder is expected in that path: move it away or choose another path",
    errno.ENOENT: "check the path (it, or a folder in it, does not exist)",
    errno.ELOOP: "a symbolic link in that path points to itself or in a loop: fix or delete it",
    errno.ENAMETOOLONG: "shorten the path or the file name",
    errno.EEXIST: "something already has that name: move it away or choose another path",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`) or run fewer jobs at once",
    errno.ENFILE: "too many open files on this system: run fewer jobs at once",
    errno.EXDEV: "the path crosses file systems: keep the output next to its folder",
    errno.ENOTEMPTY: "a folder with that name is not empty: move it away or choose another path",
}


def user_error(exc: BaseException, command: str, outputs: "Sequence[str]" = ()) -> RDError | None:
    """The one place that turns an expected failure met anywhere in a command into its one-line
    RDError: file-system errors (full disk, permissions, a folder where a file should go, ...),
    a file name or text that cannot be encoded or decoded, a number out of range, the GPU out of
    memory. None: ``exc`` is a bug (it keeps its traceback). ``outputs`` names the command's
    output flags for an error that carries no file name."""
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        where = exc.filename or f"the outputs of `{command}` ({', '.join(outputs) or 'none named'})"
        if exc.errno in _WRITE_FIXES and exc.errno != errno.ENOENT:
            return write_failed(where, exc, replaced=False)
        target = f"{where} -> {exc.filename2}" if getattr(exc, "filename2", None) else where
        return RDError(f"Cannot access {target}: {exc.strerror or exc}.",
                       f"{_ACCESS_FIXES.get(exc.errno, 'check the path and its permissions')}, then rerun.")
    if isinstance(exc, (UnicodeEncodeError, UnicodeDecodeError)):
        obj = exc.object if isinstance(exc.object, str) else exc.object.decode("utf-8", "backslashreplace")
        text = obj.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        how = "encoded" if isinstance(exc, UnicodeEncodeError) else "decoded"
        return RDError(f"A file name or text in `{command}` cannot be {how} as {exc.encoding} "
                       f"({exc.reason} in {text[:160]!r}).",
                       "rename the file to a UTF-8 name (e.g. `convmv -f latin1 -t utf8`) or run under a UTF-8 "
                       "locale (LANG=C.UTF-8).")
    if isinstance(exc, (OverflowError, FloatingPointError)):
        return RDError(f"A number in `{command}` is out of range: {(str(exc).splitlines() or [''])[0][:160]}.",
                       "check the numbers given (seed, sizes, thresholds) and the model for non-finite values.")
    if type(exc).__name__ == "OutOfMemoryError":   # CUDA running out of memory: sizing, not a bug
        return RDError(f"The GPU ran out of memory in `{command}` ({str(exc).splitlines()[0][:160]}).",
                       "lower batch_size or image_size, enable bf16, or run fewer GPU jobs at once "
                       "(--resources gpu=N).")
    return None


def _name_bytes_as_escapes(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte of a file name that is not UTF-8 (Python holds it as a lone
    surrogate, U+DC80..U+DCFF) is written as ``\\xNN``, anything else unencodable as ``\\uNNNN``."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
                   for c in bad), exc.end


TEXT_ERRORS = "rd_name_bytes"
codecs.register_error(TEXT_ERRORS, _name_bytes_as_escapes)


def display_name(text: str) -> str:
    """``text`` as the outputs write it: a file name's non-UTF-8 byte shows as ``\\xNN``."""
    return text.encode("utf-8", TEXT_ERRORS).decode("utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8; a file name that is not UTF-8 (a Latin-1 ``café.png`` on a UTF-8 system) is written
    with its odd byte as ``\\xe9`` (``caf\\xe9.png``), so the file stays valid UTF-8 for every reader."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors=TEXT_ERRORS)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite number replaced by ``null`` (None): strict JSON has no
    NaN, and a number that could not be computed is missing, not a number."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (``allow_nan=False``): NaN/inf are written as null, see :func:`json_safe`.
    A value that must be a number is checked finite by the code that produces it."""
    write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, frame: "Any") -> None:
    """Write a pandas DataFrame atomically (no index column), UTF-8 as :func:`write_text`."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", errors=TEXT_ERRORS)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:   # a Python file: a failed write keeps its errno (ENOSPC, EFBIG, ...)
                torch.save(obj, fh)
                fh.flush()
        except RuntimeError as exc:  # torch's writer wraps what went wrong in the write: find it
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, (OSError, KeyboardInterrupt)):
                cause = cause.__cause__ or cause.__context__
            if isinstance(cause, KeyboardInterrupt):   # Ctrl-C / SIGTERM arrived during the write
                raise cause from None
            raise write_failed(path, cause or exc) from exc


_KINDS = [(b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"{", "JSON or text"), (b"\x1f\x8b", "a gzip archive"), (b"%PDF", "a PDF file")]


def _kind_of(head: bytes) -> str | None:
    """What a file that is not a torch file looks like (for the message), or None if it may be one."""
    if head.startswith(b"PK") or head.startswith(b"\x80"):   # zip (torch >= 1.6) or a plain pickle
        return None
    for magic, kind in _KINDS:
        if head.startswith(magic):
            return kind
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "not a PyTorch file"


def load_torch(path: str | os.PathLike, what: str = "Checkpoint",
               fix: str = "delete it and rerun the step that writes it.") -> Any:
    """Load a ``.pt``/``.pth`` file with ``weights_only=True`` (a pickle that would run code is
    refused); any damage is one RDError naming the file. ``what`` names the file for the user
    (Checkpoint, Model, Weights file), ``fix`` says what to do with a damaged one."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise RDError(f"{what} {path} does not exist.", "check the path, or rerun the step that writes it.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise RDError(f"Cannot read {what.lower()} {path}: {exc.strerror}.", "check the file's permissions.") from exc
    if not head:
        raise RDError(f"{what} {path} is empty (0 bytes): it was cut short, e.g. by a crash or a full disk.", fix)
    kind = _kind_of(head)
    if kind:
        looks = "" if kind == "not a PyTorch file" else f" (it looks like {kind})"
        raise RDError(f"{what} {path} is not a PyTorch file{looks}.", f"pass the right file, or {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0][:160]
        if "Weights only load failed" in first or "Unsupported global" in str(exc):
            raise RDError(f"Refusing to load {path}: it holds objects beyond tensors and plain data "
                          f"({first}).",
                          "load only checkpoints written by this tool or plain state dicts "
                          "(safetensors is safest).") from exc
        raise RDError(f"Cannot read {what.lower()} {path}: {first}.",
                      f"the file is corrupt or truncated; {fix}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncation shows as RuntimeError, EOFError, KeyError, ValueError...
        first = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
        raise RDError(f"Cannot read {what.lower()} {path}: {first}.",
                      f"the file is corrupt or truncated; {fix}") from exc


_NUMBER_WORDS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (weights files can be hundreds of MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_object(path: str | os.PathLike, what: str, fix: str, damaged_fix: str | None = None) -> dict[str, Any]:
    """A JSON file that must hold an object: missing, unreadable, invalid or of another kind is
    one RDError naming the file (``fix`` when it is missing, ``damaged_fix`` when it is broken)."""
    path = Path(path)
    damaged_fix = damaged_fix or "the file is corrupt or truncated; delete it and rerun the step that writes it."
    if not path.is_file():
        raise RDError(f"{what} {path} does not exist.", fix)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RDError(f"{what} {path} is not valid JSON ({exc}).", damaged_fix) from exc
    except OSError as exc:
        raise RDError(f"Cannot read {what.lower()} {path}: {exc.strerror or exc}.", fix) from exc
    if not isinstance(value, dict):
        raise RDError(f"{what} {path} holds {type(value).__name__}, not a JSON object.", damaged_fix)
    return value


def _parse_number(cell: str) -> float | None:
    """A CSV cell -> float; '' and 'nan' -> NaN (a value that is missing on purpose); None: not a number."""
    text = cell.strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return float(text.lower()) if text.lower() in _NUMBER_WORDS else None


def _check_row_lengths(path: Path, what: str, command: str, n_columns: int) -> None:
    """Every row has as many cells as the header (pandas pads a short row with empty cells, so
    a file cut short mid-row would otherwise read as a row with missing values)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), 1):
            if row and len(row) != n_columns:
                raise RDError(f"{what} {path}, line {line}, has {len(row)} cells but its header has {n_columns}: "
                              "the file is truncated or was edited.", f"rerun `python -m rd {command}`.")


def read_table(path: str | os.PathLike, what: str, command: str, required: "list[str]",
               text_columns: "set[str]", numeric: "Any" = None) -> "Any":
    """Read a CSV this tool wrote, strictly: text columns kept verbatim (a category named ``NA``
    stays ``NA``), numeric ones parsed as numbers, where an empty cell or ``nan`` is NaN and
    anything else that is not a number is an error naming line, column and value (never a
    silent NaN). A missing file or column names the ``command`` that writes it.

    ``numeric``: a predicate on column names saying which non-text columns hold numbers
    (others are kept as text, e.g. columns a newer version added); default: all of them.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise RDError(f"{what} {path} does not exist.", f"run `python -m rd {command}` first.")
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RDError(f"Cannot read {what.lower()} {path}: {reason}.",
                      f"the file is damaged or not a CSV; rerun `python -m rd {command}`.") from exc
    except OSError as exc:
        raise RDError(f"Cannot read {what.lower()} {path}: {exc.strerror}.", "check the file and its permissions.") from exc
    _check_row_lengths(path, what, command, len(frame.columns))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RDError(f"{what} {path} lacks the column(s) {', '.join(missing)}.",
                      f"it was not written by `python -m rd {command}` or was edited; rerun that step.")
    for col in frame.columns:
        if col in text_columns or (numeric is not None and not numeric(col)):
            continue
        values = [_parse_number(cell) for cell in frame[col]]
        bad = next((i for i, v in enumerate(values) if v is None or math.isinf(v)), None)
        if bad is not None:
            kind = "is not a number" if values[bad] is None else "is infinite (no metric or measurement is)"
            raise RDError(f"{what} {path}, line {bad + 2}, column {col!r}: {frame[col].iloc[bad]!r} {kind}.",
                          f"correct the cell (empty or nan for a missing value) or rerun `python -m rd {command}`.")
        frame[col] = pd.Series(values, index=frame.index, dtype=float)
    return frame
