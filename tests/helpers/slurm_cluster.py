"""A throw-away single-node SLURM cluster on 127.0.0.1 for the `slurm` tests.

It uses Debian's ``slurm-wlm`` (22.05) and ``munge`` packages and runs munged, slurmctld
and slurmd as this process's own children (needs root, as in CI):

* a fresh munge key, socket, pid and log files in a private temp folder (never /etc/munge);
* slurm.conf with ``proctrack/linuxproc``, ``task/none``, ``select/cons_tres`` (cores + memory
  consumable), ``accounting_storage/none``, controller and node on 127.0.0.1 on free
  non-default ports, ``MinJobAge=300`` (so ``squeue`` still sees finished jobs when
  Snakemake's SLURM plugin polls) and the node's CPUs/memory as ``slurmd -C`` reports them;
* two partitions: ``rdtest`` for the jobs, and an INACTIVE default one, so a job that does
  not name ``rdtest`` is refused at once (a passing test proves the partition reached sbatch);
* two stand-in GPUs (``Gres=gpu:2``; gres.conf points at /dev/null twins made with mknod),
  so ``--gpus=1`` jobs get ``SLURM_JOB_GPUS``/``CUDA_VISIBLE_DEVICES`` as on a GPU node;
* the files go to ``/etc/slurm/slurm.conf`` and ``/etc/slurm/gres.conf`` because ``srun``
  inside an allocation reads only that path (with ``SLURM_CONF`` elsewhere it fails with
  "fetch_config: DNS SRV lookup failed"); whatever was there is moved aside and put back by
  :meth:`SlurmCluster.stop`;
* everything else (state, spool, logs, pid files, device stand-ins) lives in the temp folder.

:meth:`SlurmCluster.stop` cancels the cluster's jobs, stops the daemons by pid (and any
``slurmstepd`` that our slurmd left), restores ``/etc/slurm`` and removes the temp folder.

Use :func:`slurm_packages_status` to decide whether to skip; :func:`running_cluster` is a
context manager, and ``slurm_cluster`` a module-scoped pytest fixture built on it (import it
into a test module to use it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO / ".ci" / "slurm_packages.sh"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = SLURM_CONF.with_name("gres.conf")  # slurmd reads it next to slurm.conf
MARKER = "# written by rd tests/slurm_cluster.py"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")


# ----------------------------------------------------------------------------- packages
def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def slurm_packages_status(install: bool = True) -> str | None:
    """``None`` when a local cluster can be started here, else the reason it cannot.

    When binaries are missing and ``install`` is true, runs ``.ci/slurm_packages.sh``
    (apt-get; needs root) once and checks again.
    """
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "the local SLURM cluster needs Linux"
    missing = missing_binaries()
    if missing and install and INSTALL_SCRIPT.is_file():
        proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
        missing = missing_binaries()
        if missing:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            return (f"Debian packages slurm-wlm/munge are not installed ({', '.join(missing)} missing) "
                    f"and could not be installed by .ci/slurm_packages.sh: {' | '.join(tail)}")
    if missing:
        return (f"Debian packages slurm-wlm/munge are not installed ({', '.join(missing)} missing); "
                f"run `bash .ci/slurm_packages.sh` as root")
    if os.geteuid() != 0:
        return "the local SLURM cluster runs slurmd/slurmctld and writes /etc/slurm/slurm.conf: needs root"
    return None


# ----------------------------------------------------------------------------- helpers
def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _node_hardware() -> dict[str, int]:
    """CPUs, sockets, cores, threads and memory of this machine as slurmd sees them."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    hw = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out.splitlines()[0] if out else "")}
    if "CPUs" not in hw:  # fall back to what Python sees
        n = os.cpu_count() or 1
        hw = {"CPUs": n, "Boards": 1, "SocketsPerBoard": 1, "CoresPerSocket": n, "ThreadsPerCore": 1}
    if "RealMemory" not in hw:
        hw["RealMemory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return hw


def _pids_named(name: str) -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == name:
                    pids.add(int(d.name))
            except OSError:
                pass
    return pids


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _stop_pid(pid: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL one process given by pid (reaped if our child)."""
    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not _alive(pid)

    if gone():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


# ----------------------------------------------------------------------------- cluster
class SlurmCluster:
    """One controller + one node on 127.0.0.1. ``start()``, then ``stop()`` (always)."""

    def __init__(self, partition: str = "rdtest", node: str = "rdnode", cluster: str = "rdtest",
                 min_job_age: int = 300, fake_gpus: int = 2) -> None:
        self.partition = partition
        # The default partition refuses jobs: a submission that does not name `partition`
        # fails at once, so a passing test proves the profile's partition reached sbatch.
        self.decoy_partition = "unused_default"
        self.node = node
        self.cluster = cluster
        self.min_job_age = min_job_age
        self.base: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._stepd_before: set[int] = set()
        self.fake_gpus = fake_gpus
        self.gpus = 0                      # GPUs the node really offers (0 if the stand-ins failed)
        self.gpu_note = ""
        self._installed: dict[Path, Path | None] = {}  # file under /etc -> its backup (None: there was none)
        self.conf_text = ""
        self.ports: dict[str, int] = {}

    # -- paths
    @property
    def munge_socket(self) -> Path:
        return self.base / "munge" / "munge.socket"

    @property
    def ctld_log(self) -> Path:
        return self.base / "log" / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.base / "log" / "slurmd.log"

    def env(self) -> dict[str, str]:
        """Environment for SLURM client commands (they read /etc/slurm/slurm.conf)."""
        env = dict(os.environ)
        env.pop("SLURM_CONF", None)
        for k in list(env):
            if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_")):
                env.pop(k)
        return env

    # -- lifecycle
    def start(self, timeout: float = 90.0) -> "SlurmCluster":
        # Socket dirs must be o+x on every path component for munged: not under pytest's 0700 tmp.
        self.base = Path(tempfile.mkdtemp(prefix="rd-slurm-"))
        self.base.chmod(0o755)
        for sub in ("munge", "log", "state", "spool"):
            (self.base / sub).mkdir(mode=0o755)
        self._stepd_before = _pids_named("slurmstepd")
        try:
            self._start_munged()
            self._write_conf()
            self._start_daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", str(SLURM_CONF)])
            self._wait_for(lambda: self._ok(["scontrol", "ping"], "UP"), timeout, "slurmctld to answer `scontrol ping`")
            self._start_daemon("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(SLURM_CONF)])
            self._wait_for(lambda: self.node_state() == "idle", timeout, f"node {self.node} to be idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munged(self) -> None:
        key = self.base / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        self._start_daemon("munged", [
            "munged", "--foreground", f"--key-file={key}", f"--socket={self.munge_socket}",
            f"--pid-file={self.base / 'munge' / 'munged.pid'}", f"--log-file={self.base / 'log' / 'munged.log'}",
            f"--seed-file={self.base / 'munge' / 'munged.seed'}", "--num-threads=2",
        ])
        self._wait_for(lambda: self.munge_socket.exists(), 20, "munged to create its socket")

    def _write_conf(self) -> None:
        hw = _node_hardware()
        ctld_port, slurmd_port = _free_ports(2)
        self.ports = {"slurmctld": ctld_port, "slurmd": slurmd_port}
        host = socket.gethostname().split(".")[0]
        b = self.base
        gres_conf = self._make_fake_gpus()
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf_text = f"""{MARKER} (pid {os.getpid()}); removed when the test ends
ClusterName={self.cluster}
{"GresTypes=gpu" if self.gpus else ""}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={b / 'slurmctld.pid'}
SlurmdPidFile={b / 'slurmd.pid'}
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge={self.min_job_age}
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={hw['CPUs']} Boards={hw.get('Boards', 1)} SocketsPerBoard={hw.get('SocketsPerBoard', 1)} CoresPerSocket={hw.get('CoresPerSocket', hw['CPUs'])} ThreadsPerCore={hw.get('ThreadsPerCore', 1)} RealMemory={hw['RealMemory']}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=NO MaxTime=INFINITE State=UP
PartitionName={self.decoy_partition} Nodes={self.node} Default=YES State=INACTIVE
"""
        self._install(SLURM_CONF, self.conf_text)
        # always ours (maybe empty): a site gres.conf must not leak into this node
        self._install(GRES_CONF, f"{MARKER} (pid {os.getpid()}); removed when the test ends\n{gres_conf}")

    def _make_fake_gpus(self) -> str:
        """Stand-in GPU device files so SLURM's GPU allocation path runs: returns gres.conf text.

        slurmd wants character devices; each stand-in is a /dev/null twin (mknod 1:3) named
        fakegpu<i>, so jobs asking --gpus get SLURM_JOB_GPUS / CUDA_VISIBLE_DEVICES set exactly
        as on a GPU node (task/none: no cgroup device fencing). Without mknod rights: no GPUs.
        """
        if self.fake_gpus <= 0:
            self.gpu_note = "no fake GPUs requested"
            return ""
        dev = self.base / "dev"
        dev.mkdir(mode=0o755)
        try:
            for i in range(self.fake_gpus):
                os.mknod(dev / f"fakegpu{i}", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError as exc:
            self.gpu_note = f"no fake GPUs: mknod failed ({exc.strerror})"
            return ""
        self.gpus = self.fake_gpus
        files = f"fakegpu[0-{self.gpus - 1}]" if self.gpus > 1 else "fakegpu0"
        return f"NodeName={self.node} Name=gpu File={dev}/{files}\n"

    def _install(self, path: Path, text: str) -> None:
        """Write ``path`` (under /etc/slurm); whatever was there is moved aside for :meth:`stop`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        backup = None
        if path.exists() or path.is_symlink():
            old = path.read_text(errors="replace") if path.is_file() else ""
            stale = re.match(re.escape(MARKER) + r" \(pid (\d+)\)", old)
            if stale and not _alive(int(stale.group(1))):
                path.unlink()  # left by a killed earlier run of this helper: not the user's
            else:
                backup = path.with_name(f"{path.name}.rd-test-backup-{os.getpid()}")
                os.replace(path, backup)
        self._installed[path] = backup
        path.write_text(text)
        path.chmod(0o644)

    def _restore(self) -> None:
        for path, backup in list(self._installed.items()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if backup is not None:
                os.replace(backup, path)
            del self._installed[path]

    def _start_daemon(self, name: str, argv: list[str]) -> None:
        out = open(self.base / f"{name}.stdout", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env(), start_new_session=True)
        out.close()

    def _ok(self, argv: list[str], needle: str) -> bool:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=self.env())
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0 and needle in p.stdout

    def _wait_for(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}.\n"
                                       + self.diagnostics())
            if cond():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}.\n" + self.diagnostics())

    def node_state(self) -> str:
        p = subprocess.run(["sinfo", "-h", "-p", self.partition, "-n", self.node, "-o", "%t"], capture_output=True, text=True,
                           timeout=10, env=self.env())
        return p.stdout.strip()

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, env=self.env(), check=check)

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        if self.base is not None:
            files = sorted((self.base / "log").glob("*.log"))
            files += [self.base / f"{n}.stdout" for n, p in self.procs.items() if p.poll() is not None]
            for f in files:
                text = f.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {f.name} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel jobs, stop what :meth:`start` started (by pid), put /etc/slurm back."""
        errors = []
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--partition", self.partition, check=False)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.run("squeue", "-h", "-t", "R,PD,CG", check=False).stdout.strip():
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            _stop_pid(proc.pid, proc=proc)
            if proc.poll() is None:
                errors.append(f"{name} (pid {proc.pid}) did not stop")
        # Job step daemons our slurmd forked (they outlive it): stop them by pid too.
        for pid in _pids_named("slurmstepd") - self._stepd_before:
            _stop_pid(pid, timeout=5)
        self.procs.clear()
        self._restore()
        if self.base is not None:
            keep = os.environ.get("RD_KEEP_SLURM_LOGS")
            if keep:
                dest = Path(keep)
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copytree(self.base / "log", dest / self.base.name, dirs_exist_ok=True)
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
        if errors:
            raise RuntimeError("; ".join(errors))


@contextlib.contextmanager
def running_cluster(**kwargs) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(**kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


try:
    import pytest
except ImportError:  # pragma: no cover - the helper also works as a plain module
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def slurm_cluster() -> Iterator[SlurmCluster]:
        """A running single-node cluster; skips only when slurm-wlm/munge are absent and uninstallable."""
        reason = slurm_packages_status(install=True)
        if reason:
            pytest.skip(reason)
        with running_cluster() as cluster:
            yield cluster
