#!/usr/bin/env bash
# End-to-end benchmark (RESULTS.md item 3): the default `snakemake --cores 8` on a fresh clone.
#
# Prints (and writes to <workdir>/e2e_report.md) the number of jobs and the wall time of the whole
# workflow, the time of every rule from Snakemake's own log (job start -> "Finished jobid"), and
# the CPU time per rule from Snakemake's benchmark files (results/benchmarks/**.tsv: wall s,
# CPU s, max RSS; every rule but write_config has one), then per arm for train/evaluate.
#
# Usage:
#   benchmarks/bench_e2e.sh [--cores N] [--workdir DIR] [--venv DIR] [--repo DIR]
#   benchmarks/bench_e2e.sh --parse-only DIR    # report on a finished run in DIR, run nothing
#
# Defaults: --cores 8, --workdir a new temporary folder, --venv <repo>/.venv, --repo the
# repository this script sits in. The clone is of the repo's committed HEAD (uncommitted edits
# are not in it). Run it on a quiet machine: other load inflates every number.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cores=8
workdir=""
venv=""
parse_only=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cores) cores="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --repo) repo="$(cd "$2" && pwd)"; shift 2 ;;
    --parse-only) parse_only="$(cd "$2" && pwd)"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1. Fix: see $0 --help" >&2; exit 2 ;;
  esac
done
venv="${venv:-$repo/.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "error: no Python at $venv/bin/python. Fix: create the project venv (pip install -e .) or pass --venv DIR." >&2
  exit 2
fi
py="$venv/bin/python"

if [[ -z "$parse_only" ]]; then
  workdir="${workdir:-$(mktemp -d /tmp/rd-e2e.XXXXXX)}"
  mkdir -p "$workdir"
  clone="$workdir/rd"
  if [[ -e "$clone" ]]; then
    echo "error: $clone exists. Fix: pass an empty --workdir." >&2; exit 2
  fi
  git clone --quiet "$repo" "$clone"
  echo "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone; cores $cores; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  cd "$clone"
  export PATH="$venv/bin:$PATH"
  export PYTHONPATH="$clone${PYTHONPATH:+:$PYTHONPATH}"   # the clone's rd, not an editable install elsewhere
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(date +%s.%N)
  set +e
  /usr/bin/time -v -o "$workdir/time.txt" snakemake --cores "$cores" > "$workdir/snakemake.out" 2>&1 &
  time_pid=$!
  # Snakemake's own CPU (its process and threads, not its jobs): utime + stime of the snakemake
  # process from /proc, sampled every 0.2 s until it exits (the last sample is kept).
  (
    tck=$(getconf CLK_TCK)
    sm=""
    while kill -0 "$time_pid" 2>/dev/null; do
      [[ -z "$sm" ]] && sm="$(pgrep -P "$time_pid" | head -1)"
      if [[ -n "$sm" && -r /proc/$sm/stat ]]; then
        read -r -a f < <(sed 's/^.*) //' "/proc/$sm/stat" 2>/dev/null) || true
        [[ ${#f[@]} -gt 13 ]] && echo "scale=2; (${f[11]} + ${f[12]}) / $tck" | bc > "$workdir/snakemake_cpu.txt"
      fi
      sleep 0.2
    done
  ) &
  poll_pid=$!
  wait "$time_pid"
  rc=$?
  wait "$poll_pid" || true
  set -e
  end=$(date +%s.%N)
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%s\n' "rc=$rc" "wall_s=$(echo "$end - $start" | bc)" "cores=$cores" "commit=$(git rev-parse HEAD)" \
    "load_before=$load_before" "load_after=$load_after" "date=$(date -Iseconds)" \
    "snakemake_cpu_s=$(cat "$workdir/snakemake_cpu.txt" 2>/dev/null || echo NA)" \
    "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs" > "$workdir/run.txt"
  if [[ $rc -ne 0 ]]; then
    echo "snakemake failed (rc $rc); see $workdir/snakemake.out" >&2
  fi
  run_dir="$clone"
  meta="$workdir/run.txt"
  timefile="$workdir/time.txt"
  report="$workdir/e2e_report.md"
else
  run_dir="$parse_only"
  meta=""
  timefile=""
  report="/dev/null"
fi

"$py" - "$run_dir" "$meta" "$timefile" <<'PY' | tee "$report"
import re, sys, statistics
from datetime import datetime
from pathlib import Path

run_dir, meta, timefile = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
if not logs:
    sys.exit(f"error: no Snakemake log under {run_dir}/.snakemake/log. Fix: run the workflow there first.")
log = logs[-1]
info = dict(line.split("=", 1) for line in Path(meta).read_text().splitlines()) if meta else {}

# Jobs: "[<date>]\n(local)rule NAME:\n ... jobid: N" starts; "[<date>]\nFinished jobid: N (Rule: NAME)" ends.
stamp = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
start, end, rule_of = {}, {}, {}
last, pending_rule = None, None
for line in log.read_text().splitlines():
    m = stamp.match(line.strip())
    if m:
        last = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        pending_rule = None
        continue
    s = line.strip()
    m = re.match(r"^(?:local)?rule (\w+):$", s)
    if m:
        pending_rule = (m.group(1), last)
        continue
    m = re.match(r"^jobid: (\d+)$", s)
    if m and pending_rule:
        rule_of[m.group(1)], start[m.group(1)] = pending_rule
        pending_rule = None
        continue
    m = re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", s) or re.match(r"^Finished job (\d+)\.", s)
    if m:
        end[m.group(1)] = last
first = min(start.values()) if start else None
last_end = max(end.values()) if end else None

print(f"## End to end: `snakemake --cores {info.get('cores', '?')}` on a fresh clone\n")
if info:
    print(f"Commit {info['commit'][:10]}, {info['date']}, {info['cpu']}; load average before {info['load_before']}, "
          f"after {info['load_after']}; exit code {info['rc']}.\n")
    print(f"**Wall time: {float(info['wall_s']):.0f} s ({float(info['wall_s']) / 60:.1f} min)** "
          f"(target ≤ 5 min on 2 cores)\n")
if timefile and Path(timefile).exists():
    t = Path(timefile).read_text()
    pick = lambda key: re.search(rf"{re.escape(key)}: (.*)", t).group(1).strip()
    try:
        user, system = float(pick('User time (seconds)')), float(pick('System time (seconds)'))
        print(f"/usr/bin/time: user {user:.0f} s, system {system:.0f} s (all processes: {user + system:.0f} CPU s), "
              f"CPU {pick('Percent of CPU this job got')}, max RSS of one process "
              f"{int(pick('Maximum resident set size (kbytes)')) / 1024:.0f} MB\n")
        own = info.get("snakemake_cpu_s", "NA")
        if own not in ("", "NA"):
            print(f"Snakemake's own process (scheduling, job bookkeeping, benchmark sampling): {float(own):.0f} CPU s; "
                  f"its jobs: {user + system - float(own):.0f} CPU s.\n")
    except AttributeError:
        pass
if first and last_end:
    print(f"From the Snakemake log ({log.name}): first job start → last job end "
          f"{(last_end - first).total_seconds():.0f} s; {len(end)} of {len(start)} jobs finished.\n")

rows = {}
for jid, rule in rule_of.items():
    if jid in end:
        rows.setdefault(rule, []).append((end[jid] - start[jid]).total_seconds())
print("### Per rule, from the Snakemake log (job start → finish, 1 s resolution; jobs overlap)\n")
print("| rule | jobs | sum of job s | median s | max s | first start (s after t0) | last end (s after t0) |")
print("|---|---|---|---|---|---|---|")
for rule, ds in sorted(rows.items(), key=lambda kv: min(start[j] for j, r in rule_of.items() if r == kv[0])):
    ids = [j for j, r in rule_of.items() if r == rule and j in end]
    s0 = min(start[j] for j in ids) - first
    s1 = max(end[j] for j in ids) - first
    print(f"| {rule} | {len(ds)} | {sum(ds):.0f} | {statistics.median(ds):.0f} | {max(ds):.0f} | "
          f"{s0.total_seconds():.0f} | {s1.total_seconds():.0f} |")

bench = run_dir / "results" / "benchmarks"
if bench.is_dir():
    import pandas as pd
    # results/benchmarks/<rule>/**.tsv (one per job) or results/benchmarks/<rule>.tsv (one-job rules)
    frames = []
    for f in sorted(bench.rglob("*.tsv")):
        rel = f.relative_to(bench)
        d = pd.read_csv(f, sep="\t")
        d["rule"] = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        parts = rel.with_suffix("").parts  # train/evaluate: rule/dataset/category/backbone/setting/seed
        d["arm"] = "/".join(parts[3:5]) if len(parts) >= 6 else ""
        frames.append(d)
    if frames:
        df = pd.concat(frames)
        total_cpu = df.cpu_time.sum()
        print("\n### CPU per rule, from Snakemake's benchmark files (results/benchmarks/)\n")
        print(f"{len(df)} jobs with a benchmark file; CPU time of all of them {total_cpu:.0f} s.\n")
        print("| rule | jobs | sum CPU s | share | mean CPU s | median wall s | max wall s | median max RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        for rule, g in sorted(df.groupby("rule"), key=lambda kv: -kv[1].cpu_time.sum()):
            print(f"| {rule} | {len(g)} | {g.cpu_time.sum():.0f} | {g.cpu_time.sum() / total_cpu:.0%} | "
                  f"{g.cpu_time.mean():.1f} | {g.s.median():.1f} | {g.s.max():.1f} | {g.max_rss.median():.0f} |")
        runs = df[df.arm != ""]
        if len(runs):
            print("\n### Train / evaluate jobs per arm\n")
            print("| rule | arm | jobs | median wall s | median CPU s | sum CPU s | median max RSS MB |")
            print("|---|---|---|---|---|---|---|")
            for (rule, arm), g in runs.groupby(["rule", "arm"]):
                print(f"| {rule} | {arm} | {len(g)} | {g.s.median():.1f} | {g.cpu_time.median():.1f} | "
                      f"{g.cpu_time.sum():.0f} | {g.max_rss.median():.0f} |")
        print("\nWall s of a job includes waiting for a core (8 jobs share 2 cores); CPU s is the job's own work "
              "(user + system, from Snakemake's benchmark files). Snakemake samples a job's CPU every second for "
              "its first 30 s and every 30 s after that, so a job longer than 30 s wall is undercounted by up to "
              "its last 30 s: the jobs' total above (/usr/bin/time) is the exact figure.")
PY
