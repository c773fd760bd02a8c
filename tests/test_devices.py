"""rd.devices: GPU placement with fake device counts (no GPU needed).

Several processes compete for 2 fake GPUs through the lock folder: they get distinct ids, a
third waits, and a holder killed with SIGKILL frees its id for the waiter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rd.devices import DeviceLease, parse_spec, resolve_device
from rd.errors import RDError

REPO = Path(__file__).resolve().parents[1]
LOCAL = {"PATH": "/usr/bin"}  # an environment without SLURM or CUDA_VISIBLE_DEVICES


# ---------------------------------------------------------------- spec parsing and plain cases
@pytest.mark.parametrize("spec, expected", [("auto", ("auto", None)), ("cpu", ("cpu", None)),
                                            ("cuda", ("cuda", None)), ("cuda:3", ("cuda", 3)),
                                            (" CUDA:0 ", ("cuda", 0))])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "cpu:0", "auto:1", "mps", ""])
def test_parse_spec_rejects(spec):
    with pytest.raises(RDError, match="auto, cpu, cuda, cuda:N"):
        parse_spec(spec)


def test_cpu_and_auto_without_gpu(tmp_path):
    assert resolve_device("cpu", tmp_path, n_gpus=4, env=LOCAL).device == "cpu"
    lease = resolve_device("auto", tmp_path, n_gpus=0, env=LOCAL)
    assert (lease.device, lease.source, lease.held) == ("cpu", "cpu", False)
    assert list(tmp_path.iterdir()) == []  # no lock for the CPU


def test_cuda_without_gpu_is_an_error(tmp_path):
    with pytest.raises(RDError, match="no CUDA GPU is visible"):
        resolve_device("cuda", tmp_path, n_gpus=0, env=LOCAL)


def test_explicit_index(tmp_path):
    lease = resolve_device("cuda:1", tmp_path, n_gpus=2, env=LOCAL)
    assert (lease.device, lease.source, lease.held) == ("cuda:1", "explicit", False)
    with pytest.raises(RDError, match="cuda:2 was requested but 2 GPU"):
        resolve_device("cuda:2", tmp_path, n_gpus=2, env=LOCAL)


# ---------------------------------------------------------------- allocation given by SLURM
def test_slurm_allocation_with_cuda_visible_devices(tmp_path):
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3", "SLURM_JOB_GPUS": "3"}
    lease = resolve_device("auto", tmp_path, n_gpus=1, env=env)
    assert (lease.device, lease.source, lease.gpu_id, lease.held) == ("cuda:0", "allocation", "3", False)
    assert list(tmp_path.iterdir()) == []  # no locking inside an allocation


def test_slurm_allocation_without_visibility_restriction(tmp_path):
    env = {"SLURM_JOB_ID": "7", "SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "1,2,3"}
    lease = resolve_device("cuda", tmp_path, n_gpus=4, env=env)
    assert (lease.device, lease.source, lease.gpu_id) == ("cuda:2", "allocation", "2")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- local locking, one process
def test_two_leases_get_distinct_gpus_and_release(tmp_path):
    a = resolve_device("auto", tmp_path, n_gpus=2, env=LOCAL)
    b = resolve_device("cuda", tmp_path, n_gpus=2, env=LOCAL)
    assert {a.device, b.device} == {"cuda:0", "cuda:1"}
    assert a.source == b.source == "lock" and a.held and b.held
    assert f"pid {os.getpid()}" in a.lock_path.read_text()
    with pytest.raises(RDError, match="All 2 GPU"):
        resolve_device("auto", tmp_path, n_gpus=2, env=LOCAL, poll_s=0.05, timeout=0.2)
    a.release()
    a.release()  # idempotent
    with resolve_device("auto", tmp_path, n_gpus=2, env=LOCAL, timeout=1) as c:
        assert c.device == a.device
    assert not c.held
    b.release()


def test_cuda_visible_devices_locally_limits_candidates_and_names_locks(tmp_path):
    env = dict(LOCAL, CUDA_VISIBLE_DEVICES="5,7")
    a = resolve_device("auto", tmp_path, n_gpus=2, env=env)
    b = resolve_device("auto", tmp_path, n_gpus=2, env=env)
    assert (a.device, a.gpu_id, b.device, b.gpu_id) == ("cuda:0", "5", "cuda:1", "7")
    assert sorted(p.name.split("-gpu")[1] for p in tmp_path.iterdir()) == ["5.lock", "7.lock"]
    a.release(), b.release()


def test_default_lock_dir_env_and_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with resolve_device("auto", n_gpus=1, env=LOCAL) as lease:
        assert lease.lock_path.parent == Path(".snakemake/gpu-locks")
    custom = tmp_path / "shared-locks"
    with resolve_device("auto", n_gpus=1, env=dict(LOCAL, RD_GPU_LOCK_DIR=str(custom))) as lease:
        assert lease.lock_path.parent == custom


# ---------------------------------------------------------------- several processes, 2 fake GPUs
HOLDER = textwrap.dedent("""
    import sys, time
    from rd.devices import resolve_device
    lease = resolve_device("auto", sys.argv[1], n_gpus=2, env={"PATH": "/usr/bin"}, poll_s=0.05)
    print(lease.device, flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _spawn(lock_dir: Path, hold_s: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), str(hold_s)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    # readline blocks; the child prints one line as soon as it holds a device
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"no device line within {timeout}s")
    return proc.stdout.readline().strip()


def test_processes_get_distinct_gpus_and_killed_holder_frees_its_id(tmp_path):
    procs = [_spawn(tmp_path, 600), _spawn(tmp_path, 600)]
    try:
        devices = [_first_line(p) for p in procs]
        assert sorted(devices) == ["cuda:0", "cuda:1"]

        waiter = _spawn(tmp_path, 0)
        procs.append(waiter)
        time.sleep(1.5)  # it imports, finds both GPUs taken, and polls
        assert waiter.poll() is None, waiter.communicate()
        killed = procs[0]
        killed.send_signal(signal.SIGKILL)  # a crash: no cleanup code runs
        killed.wait(10)
        got = _first_line(waiter, timeout=30)
        assert got == devices[0]  # the dead holder's GPU, freed by the kernel
        assert waiter.wait(30) == 0
        assert "all 2 GPU(s) are taken" in waiter.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_many_processes_never_share_a_gpu(tmp_path):
    """Six jobs through 2 fake GPUs: each holds briefly; at no time do two hold the same id."""
    script = textwrap.dedent("""
        import os, sys, time
        from rd.devices import resolve_device
        with resolve_device("auto", sys.argv[1], n_gpus=2, env={"PATH": "/usr/bin"}, poll_s=0.05) as lease:
            t0 = time.time(); time.sleep(0.4); t1 = time.time()
        print(lease.device, t0, t1, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    rows = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        dev, t0, t1 = out.split()
        rows.append((dev, float(t0), float(t1)))
    assert {r[0] for r in rows} <= {"cuda:0", "cuda:1"}
    for dev in ("cuda:0", "cuda:1"):
        spans = sorted((t0, t1) for d, t0, t1 in rows if d == dev)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"{dev} held twice at once: {spans}"


def test_lease_is_a_device_lease(tmp_path):
    lease = resolve_device("auto", tmp_path, n_gpus=1, env=LOCAL)
    assert isinstance(lease, DeviceLease) and lease.index == 0 and "lock" in lease.describe()
    lease.release()
