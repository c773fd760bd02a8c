"""Which device a training or evaluation job runs on: ``--device auto|cpu|cuda|cuda:N``.

Snakemake does not set ``CUDA_VISIBLE_DEVICES`` for local jobs, so
on a workstation with several GPUs every job would otherwise land on ``cuda:0``.
:func:`resolve_device` decides, in this order:

``cpu``
    the CPU.
``cuda:N``
    exactly GPU ``N`` of the visible ones; no lock (you chose it).
``auto`` / ``cuda`` inside a SLURM GPU allocation
    (``SLURM_JOB_ID`` set and ``CUDA_VISIBLE_DEVICES``, ``SLURM_STEP_GPUS`` or ``SLURM_JOB_GPUS``
    set): the allocation's first GPU, no lock -- SLURM already gave this job its own devices.
    With ``CUDA_VISIBLE_DEVICES`` that is ``cuda:0``; without it the first id SLURM lists.
``auto`` / ``cuda`` anywhere else (a local run)
    the job claims one free GPU: it takes an exclusive ``flock`` on
    ``<lock_dir>/<host>-gpu<id>.lock`` for the first free id and keeps it until
    :meth:`DeviceLease.release` (or process exit: the kernel drops the lock when the process
    dies, crashed or killed, so a dead job never blocks a GPU). When every GPU is held, it
    waits, polling every ``poll_s`` seconds. Ids are the physical ones: the entries of
    ``CUDA_VISIBLE_DEVICES`` when you set it (only those GPUs are candidates), else ``0..n-1``.
``auto`` without a GPU
    the CPU; ``cuda`` without a GPU is an error.

The lock folder defaults to ``$RD_GPU_LOCK_DIR`` or ``.snakemake/gpu-locks`` in the working
directory (Snakemake's). Lock names carry the host name, so a lock folder on a shared file
system never makes jobs on different machines wait for each other.

Usage (the lease is a context manager; the lock is held until the block ends)::

    with resolve_device(cfg.device) as lease:
        model.to(lease.device)          # "cpu", "cuda:0", "cuda:1", ...
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from rd.errors import RDError
from rd.params import DEVICE_DEFAULT

DEFAULT_LOCK_DIR = Path(".snakemake") / "gpu-locks"
ALLOCATION_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass
class DeviceLease:
    """A device for this process. ``device`` is a string for ``torch.device``.

    ``source`` says why: ``"cpu"``, ``"explicit"`` (``cuda:N`` given), ``"allocation"``
    (SLURM / the environment chose it) or ``"lock"`` (claimed via ``lock_path``).
    ``gpu_id`` is the physical id (as in ``nvidia-smi`` / ``CUDA_VISIBLE_DEVICES``) when known.
    """

    device: str
    source: str
    gpu_id: str | None = None
    lock_path: Path | None = None
    _fd: int | None = field(default=None, repr=False)

    @property
    def index(self) -> int | None:
        """The CUDA ordinal inside this process (``cuda:<index>``), or ``None`` on the CPU."""
        return int(self.device.split(":")[1]) if ":" in self.device else (0 if self.device == "cuda" else None)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the GPU back (closing the file drops the flock). Safe to call twice."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def describe(self) -> str:
        if self.source == "lock":
            return f"{self.device} (GPU {self.gpu_id}, lock {self.lock_path})"
        if self.source == "allocation":
            return f"{self.device} (GPU {self.gpu_id} from the job's allocation)"
        return self.device

    def __enter__(self) -> "DeviceLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lease still frees its GPU when collected
        try:
            self.release()
        except Exception:
            pass


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``; rejects anything but auto, cpu, cuda, cuda:N."""
    m = _SPEC.match(str(spec).strip().lower())
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise RDError(f"Unknown device {spec!r}.", "use one of: auto, cpu, cuda, cuda:N (N = GPU index).")
    return m.group(1), (int(m.group(2)) if m.group(2) is not None else None)


def visible_gpu_count() -> int:
    """GPUs torch can use in this process (0 without CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _id_list(value: str | None) -> list[str]:
    if value is None:
        return []
    ids = [v.strip() for v in value.split(",") if v.strip()]
    # "-1" / "" / "NoDevFiles" mean "no GPU" for CUDA and SLURM
    return [] if not ids or ids[0] in ("-1", "NoDevFiles") else ids


def _allocation_gpus(env: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """(variable, ids) of a SLURM GPU allocation, or None outside one."""
    if "SLURM_JOB_ID" not in env:
        return None
    for var in ALLOCATION_VARS:
        if var in env:
            return var, _id_list(env[var])
    return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:  # who holds it, for people looking at the folder
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} host {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    except OSError:
        pass
    return fd


def _claim(ids: list[str], lock_dir: Path, poll_s: float, timeout: float | None) -> DeviceLease:
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RDError(f"Cannot create the GPU lock folder {lock_dir}: {exc.strerror}.",
                      "set RD_GPU_LOCK_DIR to a writable folder, or pass an explicit --device cuda:N.") from exc
    host = _safe(socket.gethostname().split(".")[0] or "localhost")
    paths = [lock_dir / f"{host}-gpu{_safe(gid)}.lock" for gid in ids]
    start = time.monotonic()
    told = False
    while True:
        for index, (gid, path) in enumerate(zip(ids, paths)):
            try:
                fd = _try_lock(path)
            except OSError as exc:
                raise RDError(f"Cannot lock {path}: {exc.strerror}.",
                              "set RD_GPU_LOCK_DIR to a local writable folder, or pass --device cuda:N.") from exc
            if fd is not None:
                if told:
                    print(f"rd: got GPU {gid} after {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
                return DeviceLease(f"cuda:{index}", "lock", gid, path, fd)
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise RDError(f"All {len(ids)} GPU(s) stayed busy for {waited:.0f}s (locks in {lock_dir}).",
                          "run fewer GPU jobs at once (snakemake --resources gpu=N), or wait for the others.")
        if not told:
            print(f"rd: all {len(ids)} GPU(s) are taken by other jobs (locks in {lock_dir}); waiting for one",
                  file=sys.stderr, flush=True)
            told = True
        time.sleep(poll_s)


def resolve_device(spec: str = DEVICE_DEFAULT, lock_dir: str | os.PathLike | None = None, n_gpus: int | None = None, *,
                   env: Mapping[str, str] | None = None, poll_s: float = 2.0,
                   timeout: float | None = None) -> DeviceLease:
    """Pick the device for ``spec`` (see the module docstring); returns a :class:`DeviceLease`.

    ``n_gpus`` overrides the number of visible GPUs (tests), ``env`` the environment read
    (default ``os.environ``), ``timeout`` the seconds to wait for a free GPU (default: forever).
    """
    kind, ordinal = parse_spec(spec)
    if kind == "cpu":
        return DeviceLease("cpu", "cpu")
    env = os.environ if env is None else env
    n = visible_gpu_count() if n_gpus is None else int(n_gpus)
    if ordinal is not None:
        if ordinal >= n:
            raise RDError(f"Device cuda:{ordinal} was requested but {n} GPU(s) are visible.",
                          f"use cuda:0..cuda:{n - 1}, cuda, or auto." if n else "use --device cpu or auto.")
        return DeviceLease(f"cuda:{ordinal}", "explicit", str(ordinal))
    if n == 0:
        if kind == "auto":
            return DeviceLease("cpu", "cpu")
        raise RDError("Device cuda was requested but no CUDA GPU is visible (torch.cuda.is_available() is False).",
                      "use --device auto or cpu, or run on a machine (or SLURM job with a GPU) that has one.")

    alloc = _allocation_gpus(env)
    if alloc is not None:
        var, ids = alloc
        if var == "CUDA_VISIBLE_DEVICES" or not ids:
            return DeviceLease("cuda:0", "allocation", ids[0] if ids else "0")
        # SLURM lists physical ids but did not restrict visibility: use its first one.
        first = ids[0]
        index = int(first) if first.isdigit() and int(first) < n else 0
        return DeviceLease(f"cuda:{index}", "allocation", first)

    visible = _id_list(env.get("CUDA_VISIBLE_DEVICES")) if "CUDA_VISIBLE_DEVICES" in env else []
    ids = visible[:n] if visible else [str(i) for i in range(n)]
    if len(ids) < n:  # CUDA_VISIBLE_DEVICES shorter than the count we were told: trust the count
        ids += [f"visible{i}" for i in range(len(ids), n)]
    if lock_dir is None:
        lock_dir = env.get("RD_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR
    return _claim(ids, Path(lock_dir), poll_s, timeout)
