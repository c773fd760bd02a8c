"""``aggregate``: one row per run -> ``results/summary.csv``.

Inputs
------
* run folders ``results/runs/<dataset>/<category>/<backbone>/<setting>/seed<k>/`` with
  ``metrics.json`` (evaluate) and ``train.json`` (train). Both are required; the run's identity
  (category, backbone, setting, seed) is taken from ``metrics.json`` and must agree with
  ``train.json``. Two folders with the same identity are an error (they would be counted twice).
* complexity JSONs (``results/complexity/<backbone>.json``), matched by their ``backbone`` key
  (and ``image_size`` when several files name the same backbone). A backbone without one gets
  empty GFLOPs/latency columns; a run whose image size differs from the complexity file's keeps
  the numbers but a warning says so.
* Snakemake benchmark TSVs (optional).

How benchmark TSVs are matched to runs
--------------------------------------
A benchmark path mirrors its run: ``.../<stage>/[<dataset>/]<category>/<backbone>/<setting>/seed<k>.tsv``
where ``<stage>`` is ``train`` or ``evaluate`` (``eval`` is accepted). The last four path parts
give the key (category, backbone, setting, seed) — the same key the run reads from its
``metrics.json`` — and the nearest folder above them named like a stage gives the stage. The
folder names of the run itself are not trusted, only its JSON. When the TSV path also holds a
dataset folder (the part right below the stage) and the run folder path holds one
(``runs/<dataset>/...``), they must agree, which separates two datasets in one results tree.
A TSV that names no stage or has no ``seed<k>`` stem is an error (a wiring mistake in the
workflow); a TSV that matches no run gives a warning and is ignored; a run without a TSV gets
empty ``bench_*`` cells; two TSVs for one run and stage are an error. Several rows in a TSV
(Snakemake's ``repeat()``) are averaged (seconds) or maximised (max RSS).

Output columns: see ``SUMMARY_COLUMNS``; then one ``defect_auroc:<type>`` column per
defect type seen in any run, then ``run_dir``. Rows are sorted by category, backbone, setting, seed.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from rd.errors import RDError
from rd.files import read_json_object
from rd.metric_list import METRICS

ID_COLUMNS = ["category", "backbone", "setting", "arm", "seed", "weights", "image_size", "epochs"]
METRIC_COLUMNS = [m.name for m in METRICS]
# What the teacher and student of a run were (from train.json): the fairness audit compares them.
MODEL_COLUMNS = ["model", "teacher_tag", "pretraining", "weights_sha256", "student_family", "student_output",
                 "student_init_sha256", "projection", "teacher_recipe"]
TEACHER_COLUMNS = ["teacher_top1"]   # ImageNet-1k top-1 of the teacher's weights (rd.method.weights)
RUN_COLUMNS = ["train_seconds", "peak_mem_mb", "final_loss", "eval_seconds"]
# What training saw (rd.data.holdout) and where its lr came from (the setting, or lr_grid's selection).
DATA_COLUMNS = ["validation_fraction", "n_train_images", "n_held_out", "held_out_source", "lr", "lr_source"]
COST_COLUMNS = ["params_teacher", "params_bottleneck", "params_decoder", "params_student", "params_total",
                "gflops_teacher", "gflops_student", "gflops_total", "latency_ms_batch1", "throughput_img_s"]
BENCH_COLUMNS = ["bench_train_s", "bench_train_max_rss_mb", "bench_eval_s"]
SUMMARY_COLUMNS = (ID_COLUMNS + MODEL_COLUMNS + TEACHER_COLUMNS + METRIC_COLUMNS + RUN_COLUMNS + DATA_COLUMNS
                   + COST_COLUMNS + BENCH_COLUMNS)
DEFECT_PREFIX = "defect_auroc:"
INTEGER_COLUMNS = ["image_size", "epochs", "n_train_images", "n_held_out", "params_teacher", "params_bottleneck", "params_decoder",
                   "params_student", "params_total"]
STRING_COLUMNS = (["category", "backbone", "setting", "arm", "weights", "run_dir", "held_out_source", "lr_source"]
                  + MODEL_COLUMNS)

_STAGES = {"train": "train", "evaluate": "evaluate", "eval": "evaluate"}
_SEED_RE = re.compile(r"^seed(\d+)$")
NAN = float("nan")


# --------------------------------------------------------------------------- small readers
def _read_json(path: Path, what: str, fix: str) -> dict:
    return read_json_object(path, what, fix)


def _num(value: Any) -> float:
    """A JSON number -> float; None, strings and missing values -> NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def _int(value: Any) -> int | None:
    """A JSON integer (or integral float, as older records may hold) -> int; anything else -> None.

    Integer facts (image size, epochs, counts, parameters) stay int from train.json to the report."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _seed_of(value: Any, path: Path) -> int:
    try:
        seed = int(value)
    except (TypeError, ValueError) as exc:
        raise RDError(f"{path} has seed {value!r}, not an integer.",
                      "rerun the step that writes it.") from exc
    return seed


#: Metric columns every summary.csv must have (older files lack newer metrics such as pro_rd4ad).
CORE_METRICS = ["image_auroc", "pixel_auroc", "aupro"]


def is_numeric_column(name: str) -> bool:
    """Numbers: the metric, cost and benchmark columns, ``defect_auroc:*`` and the seed; any
    other column (new text columns such as ``teacher_tag`` or ``weights_sha256``) stays text."""
    return (name in SUMMARY_COLUMNS and name not in STRING_COLUMNS) or name.startswith(DEFECT_PREFIX)


def read_summary(path: str | Path):
    """Read summary.csv strictly (see ``rd.files.read_table``): string columns kept as written (a
    category named ``NA`` stays ``NA``), a cell of a numeric column that is not a number is an
    error naming line and column, and the core metrics (``CORE_METRICS``) must be there; any
    other metric is used when it is in the file's own header."""
    from rd.files import read_table

    path = Path(path)
    frame = read_table(path, "Summary", "aggregate", ["category", "backbone", "setting", "arm", "seed", *CORE_METRICS],
                       set(STRING_COLUMNS), numeric=is_numeric_column)
    bad = frame["seed"].isna()
    if bad.any():
        raise RDError(f"Summary {path} has a non-integer seed in row {int(bad.idxmax()) + 2}.",
                      "rerun `python -m rd aggregate`.")
    frame["seed"] = frame["seed"].astype(int)
    for col in INTEGER_COLUMNS:
        if col not in frame.columns:
            continue
        values = frame[col]
        bad = values.notna() & (values != values.round())
        if bad.any():
            row = int(bad.idxmax())
            raise RDError(f"Summary {path}, line {row + 2}, column {col!r}: {values[row]:g} is not an integer.",
                          "rerun `python -m rd aggregate`.")
        frame[col] = values.astype("Int64")   # 256 stays 256 (to_dict gives int, or None when empty)
    return frame


# --------------------------------------------------------------------------- benchmarks
def parse_benchmark_path(path: str | Path) -> tuple[str, str | None, tuple[str, str, str, int]]:
    """``.../<stage>/[<dataset>/]<cat>/<backbone>/<setting>/seed<k>.tsv`` -> (stage, dataset, key)."""
    p = Path(path)
    m = _SEED_RE.match(p.stem)
    parts = p.parts
    if not m or len(parts) < 5:
        raise RDError(f"Benchmark file {p} does not follow <stage>/[<dataset>/]<category>/<backbone>/"
                      "<setting>/seed<k>.tsv.",
                      "write benchmarks with paths that mirror the run folder, e.g. "
                      "results/benchmarks/train/<dataset>/<category>/<backbone>/<setting>/seed<k>.tsv.")
    category, backbone, setting = parts[-4], parts[-3], parts[-2]
    above = parts[:-4]
    stage_idx = next((i for i in range(len(above) - 1, -1, -1) if above[i].lower() in _STAGES), None)
    if stage_idx is None:
        raise RDError(f"Benchmark file {p} names no stage folder (train or evaluate) above "
                      f"{category}/{backbone}/{setting}.",
                      "put train and evaluate benchmarks under .../train/... and .../evaluate/....")
    between = above[stage_idx + 1:]
    dataset = between[0] if len(between) == 1 else None
    return _STAGES[above[stage_idx].lower()], dataset, (category, backbone, setting, int(m.group(1)))


def _read_benchmark(path: Path) -> dict[str, float]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RDError(f"Cannot read benchmark file {path}: {exc}.",
                      "delete it and rerun the job that writes it (Snakemake `benchmark:`).") from exc
    if "s" not in frame.columns or frame.empty:
        raise RDError(f"Benchmark file {path} has no 's' column or no rows.",
                      "it is not a Snakemake benchmark TSV; pass the files that `benchmark:` writes.")
    seconds = pd.to_numeric(frame["s"], errors="coerce")
    rss = pd.to_numeric(frame["max_rss"], errors="coerce") if "max_rss" in frame.columns else None
    return {"s": float(seconds.mean()) if seconds.notna().any() else NAN,
            "max_rss": float(rss.max()) if rss is not None and rss.notna().any() else NAN}


def _run_dataset(run_dir: Path) -> str | None:
    """The dataset folder of ``.../runs/<dataset>/<cat>/<bb>/<setting>/seed<k>``, when the path has it."""
    parts = run_dir.parts
    if len(parts) >= 6 and parts[-6] == "runs":
        return parts[-5]
    return None


# --------------------------------------------------------------------------- one run
def _run_row(run_dir: Path) -> tuple[dict, dict[str, float]]:
    fix_eval = "run `python -m rd evaluate` for this run (or remove it from --runs)."
    fix_train = "run `python -m rd train` for this run (or remove it from --runs)."
    metrics = _read_json(run_dir / "metrics.json", "Metrics file", fix_eval)
    train = _read_json(run_dir / "train.json", "Training record", fix_train)
    for key in ("category", "backbone", "setting", "seed"):
        if key not in metrics:
            raise RDError(f"{run_dir / 'metrics.json'} lacks the key {key!r}.", fix_eval)
        if key not in train:   # a record without the run's identity cannot be matched to it
            raise RDError(f"{run_dir / 'train.json'} lacks the key {key!r}.", fix_train)
    ident = {k: metrics[k] for k in ("category", "backbone", "setting")}
    ident = {k: str(v) for k, v in ident.items()}
    seed = _seed_of(metrics["seed"], run_dir / "metrics.json")
    for key, value in list(ident.items()) + [("seed", seed)]:
        if key in train and str(train[key]) != str(value):
            raise RDError(f"{run_dir}: metrics.json says {key} = {value!r} but train.json says "
                          f"{train[key]!r}.",
                          "the folder mixes two runs; delete it and rerun train and evaluate.")
    row: dict[str, Any] = dict(ident)
    row["arm"] = str(metrics.get("arm") or f"{ident['backbone']}/{ident['setting']}")
    row["seed"] = seed
    row["weights"] = str(train.get("weights", "unknown"))
    row["image_size"] = _int(train.get("image_size", metrics.get("image_size")))
    row["epochs"] = _int(train.get("epochs"))
    teacher = train.get("teacher") or {}
    row["model"] = str(train.get("model") or ident["backbone"])
    row["teacher_tag"] = str(teacher.get("tag") or "unknown")
    row["pretraining"] = str(teacher.get("pretraining") or "unknown")
    row["weights_sha256"] = str(teacher.get("weights_sha256") or "")
    row["student_family"] = str(train.get("student_family") or "unknown")
    # Records written before these keys existed: the official ReLU student, no projection.
    row["student_output"] = str(train.get("student_output") or ("relu" if row["student_family"] == "resnet"
                                                                 else "unknown"))
    row["student_init_sha256"] = str(train.get("student_init_sha256") or "")
    projection = train.get("projection", "none")
    row["projection"] = ("legacy_1x1_bn" if projection is True else "none" if projection in (False, None)
                         else str(projection))
    row["teacher_recipe"] = str(train.get("teacher_recipe") or "unknown")
    row["teacher_top1"] = _num(train.get("teacher_top1"))
    for col in METRIC_COLUMNS:
        row[col] = _num(metrics.get(col))
    row["train_seconds"] = _num(train.get("train_seconds"))
    row["peak_mem_mb"] = _num(train.get("peak_mem_mb"))
    row["final_loss"] = _num(train.get("final_loss"))
    row["eval_seconds"] = _num(metrics.get("eval_seconds"))
    # runs trained before held-out images existed trained on all of train/good
    held_out = train.get("held_out") or {}
    row["validation_fraction"] = _num(train.get("validation_fraction", 0.0))
    row["n_train_images"] = _int(train.get("n_train_images"))
    row["n_held_out"] = _int(held_out.get("n_images", 0))
    row["held_out_source"] = str(held_out.get("source") or "training")
    row["lr"] = _num((train.get("setting_params") or {}).get("lr"))
    row["lr_source"] = "lr_grid" if train.get("lr_selection") else "setting"
    params = train.get("params") or {}
    for part in ("teacher", "bottleneck", "decoder", "student"):
        row[f"params_{part}"] = _int(params.get(part))
    defects = metrics.get("per_defect_image_auroc") or {}
    if not isinstance(defects, dict):
        raise RDError(f"{run_dir / 'metrics.json'}: per_defect_image_auroc is not an object.", fix_eval)
    return row, {str(k): _num(v) for k, v in defects.items()}


# --------------------------------------------------------------------------- main entry
def build_summary(run_dirs: Sequence[str | Path], complexity: Iterable[str | Path] = (),
                  benchmarks: Iterable[str | Path] = ()):
    """The summary as a DataFrame (``write_summary`` writes it)."""
    import pandas as pd

    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise RDError("No run folders given to aggregate.", "pass at least one run folder with --runs.")

    # complexity: backbone -> list of records
    comp: dict[str, list[dict]] = {}
    for path in complexity:
        path = Path(path)
        rec = _read_json(path, "Complexity file", "run `python -m rd complexity` for that backbone.")
        if "backbone" not in rec:
            raise RDError(f"Complexity file {path} lacks the key 'backbone'.",
                          "rerun `python -m rd complexity` for that backbone.")
        comp.setdefault(str(rec["backbone"]), []).append(rec)

    # benchmarks: (stage, key) -> list of (dataset, path)
    bench: dict[tuple[str, tuple], list[tuple[str | None, Path]]] = {}
    for path in benchmarks:
        stage, dataset, key = parse_benchmark_path(path)
        bench.setdefault((stage, key), []).append((dataset, Path(path)))
    used: set[Path] = set()

    rows, defects_per_row = [], []
    seen: dict[tuple, Path] = {}
    for run_dir in run_dirs:
        row, defects = _run_row(run_dir)
        key = (row["category"], row["backbone"], row["setting"], row["seed"])
        if key in seen:
            raise RDError(f"Runs {seen[key]} and {run_dir} are the same run "
                          f"(category={key[0]}, backbone={key[1]}, setting={key[2]}, seed={key[3]}).",
                          "pass each run once (one dataset per summary).")
        seen[key] = run_dir

        # cost from the complexity JSON of this backbone
        recs = comp.get(row["backbone"], [])
        if len(recs) > 1:
            same = [r for r in recs if _int(r.get("image_size")) == row["image_size"]]
            recs = same or recs
            if len(recs) > 1:
                raise RDError(f"Several complexity files for backbone {row['backbone']} at image size "
                              f"{row['image_size']}.", "pass one complexity file per backbone.")
        rec = recs[0] if recs else {}
        if rec and _int(rec.get("image_size")) != row["image_size"]:
            warnings.warn(f"complexity of {row['backbone']} was measured at {rec.get('image_size')} px, "
                          f"run {run_dir} used {row['image_size']} px", stacklevel=2)
        cparams, gflops = rec.get("params") or {}, rec.get("gflops") or {}
        for part in ("teacher", "bottleneck", "decoder", "student"):
            if row[f"params_{part}"] is None:
                row[f"params_{part}"] = _int(cparams.get(part))
        total = _int(cparams.get("total"))
        if total is None:
            student = row["params_student"]
            if student is None and None not in (row["params_bottleneck"], row["params_decoder"]):
                student = row["params_bottleneck"] + row["params_decoder"]
            total = None if None in (row["params_teacher"], student) else row["params_teacher"] + student
        row["params_total"] = total
        for part in ("teacher", "student", "total"):
            row[f"gflops_{part}"] = _num(gflops.get(part))
        row["latency_ms_batch1"] = _num(rec.get("latency_ms_batch1"))
        row["throughput_img_s"] = _num(rec.get("throughput_img_s"))

        # benchmarks
        for stage, cols in (("train", ("bench_train_s", "bench_train_max_rss_mb")), ("evaluate", ("bench_eval_s",))):
            cands = bench.get((stage, key), [])
            ds = _run_dataset(run_dir)
            if ds is not None:
                cands = [(d, p) for d, p in cands if d is None or d == ds]
            for c in cols:
                row[c] = NAN
            if len(cands) > 1:
                raise RDError(f"Several {stage} benchmark files match run {run_dir}: "
                              f"{', '.join(str(p) for _, p in cands)}.",
                              "pass one benchmark file per run and stage.")
            if cands:
                used.add(cands[0][1])
                values = _read_benchmark(cands[0][1])
                row[cols[0]] = values["s"]
                if stage == "train":
                    row[cols[1]] = values["max_rss"]
        row["run_dir"] = str(run_dir)
        rows.append(row)
        defects_per_row.append(defects)

    unused = [str(p) for entries in bench.values() for _, p in entries if p not in used]
    if unused:
        warnings.warn(f"{len(unused)} benchmark file(s) match no run and were ignored: "
                      f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}", stacklevel=2)

    defect_types = sorted({t for d in defects_per_row for t in d})
    for row, defects in zip(rows, defects_per_row):
        for t in defect_types:
            row[DEFECT_PREFIX + t] = defects.get(t, NAN)
    columns = SUMMARY_COLUMNS + [DEFECT_PREFIX + t for t in defect_types] + ["run_dir"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in INTEGER_COLUMNS:  # written as 64, not 64.0; empty stays empty
        frame[col] = frame[col].astype("Int64")
    frame = frame.sort_values(["category", "backbone", "setting", "seed"], kind="stable").reset_index(drop=True)
    return frame


def write_summary(run_dirs: Sequence[str | Path], complexity: Iterable[str | Path] = (),
                  benchmarks: Iterable[str | Path] = (), out: str | Path = "results/summary.csv"):
    """Write ``out`` (summary.csv, one row per run) atomically and return the DataFrame."""
    from rd.files import write_csv

    frame = build_summary(run_dirs, complexity=complexity, benchmarks=benchmarks)
    write_csv(out, frame)
    return frame
