"""The workflow on a real SLURM cluster, through `--workflow-profile workflow/profiles/slurm`.

A single-node cluster (munged + slurmctld + slurmd from Debian's slurm-wlm 22.05, on
127.0.0.1, two stand-in GPUs; started and stopped by ``tests/helpers/slurm_cluster.py``) runs:

1. a two-rule Snakefile (2 x ``probe`` with ``gpu=1`` -> ``collect``) through a copy of the
   repo's slurm profile: proves sbatch/srun, the plugin's status polling and GPU requests work,
   and that ``rd.devices`` inside an allocation uses the GPU SLURM gave (no lock) -- before the
   longer real workflow is blamed for anything;
2. the real workflow with ``workflow/configs/tiny.yaml`` in a temp copy of the repo.

The profile copy is adapted exactly as docs/slurm.md tells a user to: ``slurm_partition`` added
to ``default-resources`` (the cluster's default partition refuses jobs, so this is proven);
plus ``--slurm-no-account`` and ``--slurm-status-command squeue`` on the command line (this
cluster has no accounting). Test-only: shorter status polling
(``--slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2``) and
``--slurm-keep-successful-logs`` so the per-job SLURM logs can be checked.

Checks: every non-local job was submitted with sbatch (a SLURM job id per job in Snakemake's
log), slurmctld logged each submission, allocation and exit 0, squeue (MinJobAge=300) shows
every job COMPLETED in the partition, each job's SLURM log shows Snakemake finished it inside
the allocation, every output of the DAG exists (``snakemake --summary``: all ``ok``), and a
dry run through the profile has nothing to do. Each test prints a per-job timeline.

Skips only when slurm-wlm/munge are not installed and cannot be (``.ci/slurm_packages.sh``).
Needs root. Set ``RD_KEEP_SLURM_LOGS=<dir>`` to keep the daemons' logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

try:  # tests/ as a plain folder (pytest's default rootdir-relative import) or as a package
    from helpers.slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (fixture)
except ImportError:  # pragma: no cover
    from tests.helpers.slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
PROFILE = Path("workflow/profiles/slurm")
TINY = Path("workflow/configs/tiny.yaml")
SNAKEMAKE_TIMEOUT_S = 540
TEST_FLAGS = [
    "--slurm-no-account", "--slurm-status-command", "squeue",   # a cluster without accounting
    "--slurm-init-seconds-before-status-checks", "2",            # test speed only
    "--seconds-between-status-checks", "2",
    "--slurm-keep-successful-logs",
]
# slurmctld starts a job from its main scheduler ("sched: Allocate ...") or from backfill
ALLOCATED = r"(?:sched: Allocate JobId={sid} NodeList={node}\b|backfill: _start_job: Started JobId={sid} in \S+ on {node}\b)"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


# ----------------------------------------------------------------------------- helpers
def copy_repo(dst: Path) -> Path:
    """The working tree (tracked + untracked, minus ignored files) copied to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout.decode().split("\0")
        files = [f for f in listed if f and (REPO / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".snakemake", "results", "data", "logs", "__pycache__", ".pytest_cache"}
        files = [str(p.relative_to(REPO)) for p in REPO.rglob("*")
                 if p.is_file() and not (set(p.relative_to(REPO).parts) & skip) and not p.name.startswith(".venv")]
    for f in files:
        if f.startswith(".venv"):
            continue
        target = dst / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, target)
    return dst


def adapt_profile(profile_dir: Path, partition: str) -> dict:
    """What docs/slurm.md tells users to do: name their partition under default-resources."""
    path = profile_dir / "config.yaml"
    prof = yaml.safe_load(path.read_text())
    assert prof.get("executor") == "slurm", f"{path}: executor must be slurm"
    prof.setdefault("default-resources", {})
    assert isinstance(prof["default-resources"], dict), "default-resources as a mapping"
    prof["default-resources"]["slurm_partition"] = partition
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    return prof


def job_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    # rules call `python -m rd`: the interpreter running the tests (with torch & co) must be first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_snakemake(workdir: Path, *args: str, timeout: float = SNAKEMAKE_TIMEOUT_S) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "snakemake", *args]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=job_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"snakemake did not finish in {timeout}s: {' '.join(cmd)}\n{out[-3000:]}\n{err[-6000:]}")
    return proc, time.monotonic() - t0


def submitted_rules(log: str) -> dict[str, str]:
    """{SLURM job id: rule}, the rule read from the job's SLURM log path (.../rule_<name>/...)."""
    out = {}
    for _, sid, logfile in SUBMITTED.findall(log):
        m = re.search(r"/(?:rule|group)_([^/]+)/", logfile)
        out[sid] = m.group(1) if m else "?"
    return out


def check_submissions(cluster: SlurmCluster, log: str, workdir: Path) -> dict[str, str]:
    """Every non-local job went through sbatch, SLURM ran it to completion. Returns {jobid: rule}."""
    submitted = SUBMITTED.findall(log)
    remote_rules = re.findall(r"^rule (\w+):", log, flags=re.M)
    local_rules = re.findall(r"^localrule (\w+):", log, flags=re.M)
    assert submitted, "no 'has been submitted with SLURM jobid' line in Snakemake's log"
    assert len(submitted) == len(remote_rules), (
        f"{len(remote_rules)} non-local jobs but {len(submitted)} sbatch submissions")
    slurm_ids = [sid for _, sid, _ in submitted]
    assert len(set(slurm_ids)) == len(slurm_ids)

    ctld = cluster.ctld_log.read_text(errors="replace")
    for sid in slurm_ids:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={sid}\b", ctld), f"slurmctld did not log job {sid}"
        assert re.search(ALLOCATED.format(sid=sid, node=cluster.node), ctld), f"job {sid} never allocated"
        assert re.search(rf"_job_complete: JobId={sid} WEXITSTATUS 0\b", ctld), f"job {sid} did not exit 0"

    # MinJobAge=300 keeps finished jobs in slurmctld, so squeue still lists them
    sq = cluster.run("squeue", "-h", "-t", "all", "-o", "%i|%T|%P|%j").stdout
    states = {line.split("|")[0]: line.split("|")[1:] for line in sq.splitlines() if line.strip()}
    for sid in slurm_ids:
        assert sid in states, f"squeue does not list job {sid}: {sq}"
        state, partition, _name = states[sid]
        assert (state, partition) == ("COMPLETED", cluster.partition), (sid, states[sid])

    # each job's SLURM log (kept by --slurm-keep-successful-logs) shows Snakemake ran inside the allocation
    for _, sid, logfile in submitted:
        text = Path(logfile).read_text(errors="replace")
        assert "Finished jobid" in text or "steps (100%) done" in text, f"{logfile}:\n{text[-2000:]}"
    ids = submitted_rules(log)
    print(f"\n{len(slurm_ids)} SLURM jobs ({', '.join(f'{k}:{v}' for k, v in ids.items())}); "
          f"{len(local_rules)} local job(s): {', '.join(local_rules)}")
    return ids


def summary_rows(workdir: Path, *args: str) -> list[dict[str, str]]:
    proc, _ = run_snakemake(workdir, "--summary", "--cores", "1", *args, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if "\t" in l]
    header = lines[0].split("\t")
    assert header[:1] == ["output_file"], proc.stdout[:1000]
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


def timeline(cluster: SlurmCluster, ids: dict[str, str]) -> str:
    """Per SLURM job: rule, seconds queued (submit->allocate) and running (allocate->complete)."""
    ctld = cluster.ctld_log.read_text(errors="replace")
    stamp = r"\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] "

    def when(pattern: str, sid: str) -> float | None:
        m = re.search(stamp + pattern.format(sid=sid), ctld)
        return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + m.group(1)[19:]) if m else None

    rows, first, last = [], None, None
    for sid, rule in ids.items():
        sub = when(r"_slurm_rpc_submit_batch_job: JobId={sid}\b", sid)
        alloc = when(ALLOCATED.format(sid=sid, node=r"\S+"), sid)
        done = when(r"_job_complete: JobId={sid} done", sid)
        if None in (sub, alloc, done):
            rows.append(f"  job {sid:>3} {rule:<14} (incomplete in slurmctld log)")
            continue
        first, last = min(first or sub, sub), max(last or done, done)
        rows.append(f"  job {sid:>3} {rule:<14} queued {alloc - sub:5.1f}s  ran {done - alloc:5.1f}s")
    span = f"first submit -> last completion: {last - first:.0f}s" if first else ""
    return "\n".join(rows + [f"  {span}"])


def failure_report(log: str, cluster: SlurmCluster) -> str:
    """The 'Error in rule' blocks of Snakemake's log (with the job's log tail) and slurmctld's tail."""
    blocks = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Error in rule") and len(blocks) < 3:
            blocks.append("\n".join(l[:400] for l in lines[i:i + 30]))
    return ("\n---\n".join(blocks) or log[-6000:]) + "\n" + cluster.diagnostics(lines=15)


def key_lines(log: str, cluster: SlurmCluster, n: int = 4) -> str:
    subs = [l for l in log.splitlines() if "has been submitted with SLURM jobid" in l]
    first = {f"JobId={sid}" for sid in list(submitted_rules(log))[:2]}
    ctld = [l for l in cluster.ctld_log.read_text(errors="replace").splitlines()
            if any(re.search(rf"{j}\b", l) for j in first)
            and ("_slurm_rpc_submit_batch_job" in l or "Allocate" in l or "Started JobId" in l or "_job_complete" in l)]
    return "\n".join(["snakemake:"] + subs[:n] + ["slurmctld:"] + ctld[:2 * n])


# ----------------------------------------------------------------------------- tests
TRIVIAL = """
rule all:
    input: "out/collect.txt"

rule probe:
    output: "out/probe{i}.json"
    threads: 1
    resources: mem_mb=200, runtime=5, gpu=GPU
    shell: "PYTHONPATH=REPO python probe.py {output}"

rule collect:
    input: expand("out/probe{i}.json", i=[0, 1])
    output: "out/collect.txt"
    threads: 1
    resources: mem_mb=200, runtime=5
    shell: "echo job=$SLURM_JOB_ID node=$SLURMD_NODENAME step=$SLURM_STEP_ID > {output}"
"""

# Each probe job records where it ran and what rd.devices picked -- what a train/evaluate job
# does first. Inside a SLURM GPU allocation rd.devices must take the allocation's GPU and lock
# nothing (the lock folder stays absent). The two probes start together (2 free cores).
PROBE = """
import json, os, sys, time
from rd.devices import resolve_device
with resolve_device("auto", lock_dir="gpu-locks", n_gpus=1) as lease:  # no CUDA here: 1 fake visible GPU
    info = {"device": lease.device, "source": lease.source, "gpu_id": lease.gpu_id, "held": lease.held,
            "job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID"),
            "node": os.environ.get("SLURMD_NODENAME"), "SLURM_STEP_GPUS": os.environ.get("SLURM_STEP_GPUS"),
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
    time.sleep(3)
    info["end"] = time.time()
open(sys.argv[1], "w").write(json.dumps(info))
"""


def test_two_rule_workflow_runs_through_sbatch(slurm_cluster: SlurmCluster, tmp_path):
    """probe x2 (one fake GPU each) -> collect: two rules, three sbatch jobs, one dependency."""
    work = tmp_path / "trivial"
    (work / PROFILE).parent.mkdir(parents=True)
    shutil.copytree(REPO / PROFILE, work / PROFILE)
    adapt_profile(work / PROFILE, slurm_cluster.partition)
    gpu = 1 if slurm_cluster.gpus >= 2 else 0
    (work / "Snakefile").write_text(TRIVIAL.replace("REPO", str(REPO)).replace("GPU", str(gpu)))
    (work / "probe.py").write_text(PROBE)

    proc, secs = run_snakemake(work, "--workflow-profile", str(PROFILE), *TEST_FLAGS)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, failure_report(log, slurm_cluster)
    ids = check_submissions(slurm_cluster, log, work)
    assert sorted(ids.values()) == ["collect", "probe", "probe"], ids
    by_rule = {v: k for k, v in ids.items()}
    # the shell commands ran in job step 0 (srun inside the sbatch allocation) of the job SLURM reported
    assert (work / "out" / "collect.txt").read_text().split() == [
        f"job={by_rule['collect']}", f"node={slurm_cluster.node}", "step=0"]
    probes = [json.loads((work / "out" / f"probe{i}.json").read_text()) for i in (0, 1)]
    for p in probes:
        assert ids.get(p["job"]) == "probe" and (p["node"], p["step"]) == (slurm_cluster.node, "0"), p

    if gpu:
        for p in probes:
            # resources gpu=1 -> the plugin's sbatch/srun --gpus=1 -> SLURM gave one GPU -> rd.devices took it
            # (the plugin's jobstep drops SLURM_JOB_GPUS before its srun; the step sets SLURM_STEP_GPUS)
            assert p["SLURM_STEP_GPUS"] is not None and p["CUDA_VISIBLE_DEVICES"] == p["SLURM_STEP_GPUS"], p
            assert (p["device"], p["source"], p["gpu_id"], p["held"]) == ("cuda:0", "allocation",
                                                                         p["CUDA_VISIBLE_DEVICES"], False), p
        assert not (work / "gpu-locks").exists(), "rd.devices locked a GPU inside a SLURM allocation"
        a, b = probes
        overlapped = a["start"] < b["end"] and b["start"] < a["end"]
        if overlapped:  # running at the same time, they hold different GPUs
            assert a["SLURM_STEP_GPUS"] != b["SLURM_STEP_GPUS"], probes
        print(f"GPU jobs (SLURM job, GPU SLURM gave, rd.devices device): "
              f"{[(p['job'], p['SLURM_STEP_GPUS'], p['device']) for p in probes]}, ran at the same time: {overlapped}")
    else:
        print(f"GPU part not checked: {slurm_cluster.gpu_note}")
    print(f"two-rule workflow on SLURM: {secs:.1f}s\n" + timeline(slurm_cluster, ids) + "\n"
          + key_lines(log, slurm_cluster))


def test_tiny_workflow_runs_on_slurm(slurm_cluster: SlurmCluster, tmp_path):
    work = copy_repo(tmp_path / "repo")
    for f in ("Snakefile", TINY, PROFILE / "config.yaml"):
        assert (work / f).is_file(), f"{f} missing from the repo"
    adapt_profile(work / PROFILE, slurm_cluster.partition)

    proc, secs = run_snakemake(work, "--workflow-profile", str(PROFILE), "--configfile", str(TINY), *TEST_FLAGS)
    log = proc.stdout + proc.stderr
    submitted = submitted_rules(log)
    print(f"\ntiny workflow through sbatch: {secs:.1f}s\n" + timeline(slurm_cluster, submitted))
    assert proc.returncode == 0, failure_report(log, slurm_cluster)
    ids = check_submissions(slurm_cluster, log, work)
    assert {"prepare_data", "smoke", "train", "evaluate"} <= set(ids.values()), sorted(set(ids.values()))

    # every output of the DAG exists and is up to date, as Snakemake itself sees it
    rows = summary_rows(work, "--configfile", str(TINY))
    assert rows, "empty --summary"
    bad = [(r["output_file"], r["status"], r["plan"]) for r in rows
           if r["status"] != "ok" or r["plan"] != "no update" or not (work / r["output_file"]).exists()]
    assert not bad, bad
    outputs = {r["output_file"] for r in rows}
    for must in ("reports/report.html", "results/summary.csv", "results/stats.csv"):
        assert must in outputs and (work / must).stat().st_size > 0, must
    n_runs = sum(1 for r in rows if r["output_file"].endswith("/metrics.json"))
    assert n_runs == 4, n_runs  # tiny: 1 category x 2 arms x 2 seeds
    for r in rows:
        if r["output_file"].endswith("/train.json"):
            assert '"device": "cpu"' in (work / r["output_file"]).read_text()

    # nothing left to do: a second invocation through the same profile submits nothing
    again, _ = run_snakemake(work, "--workflow-profile", str(PROFILE), "--configfile", str(TINY), *TEST_FLAGS, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    print(f"tiny workflow on SLURM: {secs:.1f}s, {len(ids)} sbatch jobs, {len(rows)} outputs ok\n"
          + key_lines(log, slurm_cluster))
