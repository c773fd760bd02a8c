"""The self-contained HTML report: ``build_report(summary=, stats=, config=, manifests=, out=)``.

One HTML file, figures embedded as base64 PNG, no script, no network request; long parts fold
into ``<details>``. Text goes through jinja2 with autoescape on, so names from user data (a
category called ``<b>x</b>``) show as text. Figures are drawn with matplotlib's Agg canvas on
``Figure`` objects (no pyplot state), small (dpi 80-90) so the file stays a few MB at MVTec
scale (15 categories x 4 arms x 5 seeds).

Per-run files are read from each summary row's ``run_dir`` (as written, else relative to the
summary's folder and its parents): ``train.json``, ``history.csv``, ``curves.json``,
``failure_cases.npz`` (loaded with ``allow_pickle=False``), ``scores.csv`` (test-set paths, for
the fairness audit). A missing file is said in the report, never a crash.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from rd.errors import RDError

TEMPLATES = Path(__file__).with_name("templates")
METRICS = [("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"),
           ("image_ap", "image AP"), ("pixel_ap", "pixel AP"), ("image_f1max", "image F1max"),
           ("pixel_f1max", "pixel F1max"), ("iou", "IoU")]
METRIC_LABEL = dict(METRICS)
HEADLINE_METRICS = ("image_auroc", "pixel_auroc", "aupro")
ALPHA = 0.05
RANDOM_INIT_MEANING = (
    "Reverse Distillation assumes a pretrained teacher whose features already tell normal from anomalous; "
    "with random weights the numbers measure the architecture with random features, not the pretrained "
    "backbone. Do not read such a comparison as evidence about pretrained ResNet vs ConvNeXt teachers; rerun "
    "with weights: imagenet (or a local checkpoint) for that.")
RANDOM_WEIGHTS = {"none", "random", "scratch", "", "null"}
PACKAGES = ["rd-backbones", "torch", "torchvision", "timm", "numpy", "scipy", "pandas", "scikit-learn",
            "scikit-image", "fvcore", "matplotlib", "jinja2", "snakemake"]
MAIN_FIGURES = ("cost_vs_auroc", "loss", "eval_metrics", "curves")
MINUS = "\u2212"
DPI = 85


# =========================================================================== formatting
def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 2, signed: bool = False) -> str:
    if not _finite(x):
        return "—"
    s = f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"
    return s.replace("-", MINUS)


def fmt_pt(x: Any, digits: int = 1, signed: bool = False) -> str:
    """A [0, 1] metric as points (x100)."""
    return fmt_num(float(x) * 100 if _finite(x) else x, digits, signed)


def fmt_p(p: Any) -> str:
    if not _finite(p):
        return "—"
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if p < 0.1:
        return f"{p:.3f}"
    return f"{p:.2f}"


def fmt_int(x: Any) -> str:
    return f"{int(round(float(x))):,}" if _finite(x) else "—"


def fmt_millions(x: Any) -> str:
    return f"{float(x) / 1e6:.2f} M" if _finite(x) else "—"


def fmt_duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "—"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


@functools.lru_cache(maxsize=None)
def _t975(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def _mean_sd_ci(values: Iterable[float]) -> dict:
    v = np.asarray([x for x in values if _finite(x)], dtype=float)
    n = v.size
    out = {"n": n, "mean": float(v.mean()) if n else math.nan, "sd": float(v.std(ddof=1)) if n > 1 else math.nan,
           "lo": math.nan, "hi": math.nan}
    if n > 1:
        half = _t975(n - 1) * out["sd"] / math.sqrt(n)
        out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


# =========================================================================== figures
def _figure(w: float, h: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, pil_kwargs={"optimize": True})
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _placeholder(text: str, w: float = 6, h: float = 1.2) -> bytes:
    fig = _figure(w, h)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="#555")
    return _png(fig)


def _arm_colors(arms: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def _grid(n: int, cell_w: float = 2.5, cell_h: float = 2.0, max_cols: int = 5):
    # small multiples: shared axes and a fixed layout (constrained layout costs seconds on 15 panels)
    cols = max(1, min(max_cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = _figure(cell_w * cols, cell_h * rows + 0.5, layout=None)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    top = 1 - 0.45 / (cell_h * rows + 0.5)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.35 / (cell_h * rows + 0.5) + 0.02, top=top,
                        wspace=0.12, hspace=0.28)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _seed_band(curves: dict[tuple[str, int], np.ndarray]):
    """{(category, seed): y} on one x grid -> mean over seeds of the category mean, min, max over seeds."""
    import warnings

    by_seed: dict[int, list[np.ndarray]] = {}
    for (_, seed), y in curves.items():
        by_seed.setdefault(seed, []).append(y)
    with warnings.catch_warnings():  # all-NaN points (epochs without eval) stay NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.array([np.nanmean(np.vstack(v), axis=0) for v in by_seed.values()])
        return np.nanmean(per_seed, axis=0), np.nanmin(per_seed, axis=0), np.nanmax(per_seed, axis=0)


# =========================================================================== inputs
@dataclass
class Run:
    row: dict
    run_dir: Path | None
    train: dict = field(default_factory=dict)
    history: Any = None
    curves: dict = field(default_factory=dict)
    failure_path: Path | None = None
    test_hash: str | None = None
    problems: list[str] = field(default_factory=list)


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RDError(f"Config {path} does not exist.", "pass the resolved config (JSON or YAML) with --config.")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            cfg = json.loads(text)
        else:
            import yaml

            cfg = yaml.safe_load(text)
    except Exception as exc:  # json or yaml error: both say where
        raise RDError(f"Config {path} cannot be parsed: {str(exc).splitlines()[0]}.",
                      "pass the resolved config the workflow wrote (JSON or YAML).") from exc
    if not isinstance(cfg, dict):
        raise RDError(f"Config {path} is not a mapping.", "pass the resolved config the workflow wrote.")
    return cfg


def _config_view(cfg: dict) -> dict:
    ds = cfg.get("dataset")
    if isinstance(ds, dict):
        name, root, cats = ds.get("name"), ds.get("root"), ds.get("categories")
    else:
        name, root, cats = ds, cfg.get("data_root") or cfg.get("root"), None
    cats = cfg.get("categories") or cats or []
    return {"dataset": str(name) if name is not None else "unknown", "root": root, "categories": list(cats)}


def _load_manifests(paths: Sequence[str | Path]) -> dict[str, dict]:
    out = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise RDError(f"Data manifest {p} does not exist.", "run `python -m rd prepare-data` for that category.")
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RDError(f"Data manifest {p} is not valid JSON ({exc}).",
                          "delete it and rerun `python -m rd prepare-data`.") from exc
        if not isinstance(m, dict):
            raise RDError(f"Data manifest {p} holds {type(m).__name__}, not a JSON object.",
                          "delete it and rerun `python -m rd prepare-data`.")
        out[str(m.get("category", p.stem))] = m
    return out


def _resolve_run_dir(run_dir: str, summary_path: Path) -> Path | None:
    if not run_dir:
        return None
    p = Path(run_dir)
    if p.is_dir():
        return p
    if not p.is_absolute():
        for base in list(summary_path.resolve().parents)[:4]:
            if (base / p).is_dir():
                return base / p
    return None


def _load_run(row: dict, summary_path: Path) -> Run:
    import pandas as pd

    run = Run(row=row, run_dir=_resolve_run_dir(str(row.get("run_dir", "")), summary_path))
    if run.run_dir is None:
        run.problems.append(f"run folder {row.get('run_dir')!r} not found")
        return run
    d = run.run_dir
    try:
        run.train = json.loads((d / "train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run.problems.append("train.json missing or unreadable")
    try:
        h = pd.read_csv(d / "history.csv")
        run.history = h if {"epoch", "loss"} <= set(h.columns) else None
        if run.history is None:
            run.problems.append("history.csv lacks epoch/loss columns")
    except (OSError, ValueError):
        run.problems.append("history.csv missing or unreadable")
    try:
        run.curves = json.loads((d / "curves.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run.problems.append("curves.json missing or unreadable")
    if (d / "failure_cases.npz").is_file():
        run.failure_path = d / "failure_cases.npz"
    else:
        run.problems.append("failure_cases.npz missing")
    try:
        paths = pd.read_csv(d / "scores.csv", usecols=["path"], dtype=str, keep_default_na=False)["path"]
        run.test_hash = hashlib.sha256("\n".join(sorted(paths)).encode("utf-8")).hexdigest()
    except (OSError, ValueError):
        run.problems.append("scores.csv missing or unreadable")
    return run


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    info = {"commit": "unknown", "dirty": False}
    for cwd in (Path.cwd(), root):
        try:
            res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return info
        if res.returncode == 0 and res.stdout.strip():
            info["commit"] = res.stdout.strip()
            try:
                st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10)
                info["dirty"] = st.returncode == 0 and bool(st.stdout.strip())
            except (OSError, subprocess.SubprocessError):
                pass
            return info
    return info


def _package_versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = [("python", sys.version.split()[0])]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out


# =========================================================================== sections
def _ordered_arms(summary, cfg: dict) -> list[str]:
    present = list(dict.fromkeys(summary["arm"]))
    ordered = [a for a in (cfg.get("arms") or []) if a in present]
    return ordered + sorted(a for a in present if a not in ordered)


def _is_random(weights: Any) -> bool:
    return weights is None or str(weights).strip().lower() in RANDOM_WEIGHTS


def _decoder_family(backbone: str, train: dict) -> str:
    if train.get("decoder"):
        return str(train["decoder"])
    b = backbone.lower()
    for fam in ("convnext", "resnet", "efficientnet", "mobilenet", "vit"):
        if fam in b:
            return f"de_{'resnet' if fam == 'resnet' else fam} (from the backbone name)"
    return "unknown"


def _describe_setting(name: str, params: dict) -> str:
    inner = ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in params.items())
    return f"{name}: {inner}" if inner else name


def _joined(values: Iterable[Any]) -> str:
    vals = sorted({str(v) for v in values})
    return ", ".join(vals) if vals else "unknown"


def _arm_facts(arm: str, runs: list[Run], cfg: dict) -> dict:
    rows = [r for r in runs if r.row["arm"] == arm]
    bb, _, setting = arm.partition("/")
    trains = [r.train for r in rows if r.train]
    sp = [t.get("setting_params") or {} for t in trains] or [(cfg.get("settings") or {}).get(setting, {})]
    weights = _joined(r.row.get("weights", "unknown") for r in rows)
    cats = sorted({r.row["category"] for r in rows})
    per_cat = {}
    for c in cats:
        hs = {r.test_hash for r in rows if r.row["category"] == c}
        per_cat[c] = next(iter(hs)) if len(hs) == 1 and None not in hs else ("mixed" if len(hs) > 1 else None)
    if any(v is None for v in per_cat.values()):
        split = None
    elif any(v == "mixed" for v in per_cat.values()):
        split = "mixed"
    else:
        split = hashlib.sha256(json.dumps(sorted(per_cat.items())).encode()).hexdigest()
    return {
        "arm": arm, "backbone": bb, "setting": setting, "categories": cats, "split": split,
        "image_size": _joined(int(r.row["image_size"]) for r in rows if _finite(r.row.get("image_size"))),
        "augmentation": _joined(t.get("augmentation", s.get("augmentation", "none")) for t, s in zip(trains, sp))
        if trains else "none",
        "preprocessing": _joined(t.get("preprocessing") or s.get("preprocessing", "resize to {size} px").replace(
            "{size}", str(int(r.row["image_size"])) if _finite(r.row.get("image_size")) else "?")
            for t, s in zip(trains or [{}], sp) for r in rows[:1]),
        "loss": _joined(t.get("loss", s.get("loss", "RD cosine loss: sum over stages of 1 − cos(teacher, student)"))
                        for t, s in zip(trains or [{}], sp)),
        "seeds": ", ".join(str(s) for s in sorted({int(r.row["seed"]) for r in rows})),
        "epochs": _joined(int(r.row["epochs"]) for r in rows if _finite(r.row.get("epochs"))),
        "steps": _joined(t.get("steps", "?") for t in trains),
        "batch_size": _joined(t.get("batch_size", cfg.get("batch_size", "?")) for t in trains),
        "decoder": _joined(_decoder_family(bb, t) for t in (trains or [{}])),
        "weights": weights,
        "random": any(_is_random(r.row.get("weights")) for r in rows),
        "setting_params": _joined(_describe_setting(setting, s) for s in sp),
    }


def _fairness(comparisons, facts: dict[str, dict], manifests: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    sections, loud = [], []
    for a, b in comparisons:
        fa, fb = facts[a], facts[b]
        items = []

        def add(aspect, va, vb, by_design=None, unknown=False, note=""):
            if unknown:
                status = "unknown"
            elif va == vb:
                status = "equal"
            else:
                status = "by design" if by_design else "different"
            items.append({"aspect": aspect, "a": va, "b": vb, "status": status, "note": note})

        cats_equal = fa["categories"] == fb["categories"]
        man = [manifests.get(c, {}).get("file_list_sha256") for c in sorted(set(fa["categories"]) | set(fb["categories"]))]
        man_note = ("data manifests (file_list_sha256, shared by both arms): " +
                    ", ".join(f"{c} {str(m)[:10]}" for c, m in zip(sorted(set(fa["categories"]) | set(fb["categories"])), man))
                    if any(man) else "no data manifest given: train split not hashed")
        split_a = "unknown" if fa["split"] is None else ("differs between seeds" if fa["split"] == "mixed" else fa["split"][:12])
        split_b = "unknown" if fb["split"] is None else ("differs between seeds" if fb["split"] == "mixed" else fb["split"][:12])
        add("dataset: categories", ", ".join(fa["categories"]), ", ".join(fb["categories"]))
        add("test split (hash of the test image list in scores.csv)", split_a, split_b,
            unknown=(fa["split"] is None or fb["split"] is None) and split_a == split_b, note=man_note)
        if not cats_equal:
            items[-2]["note"] = "the arms cover different categories: averages are not comparable"
        add("preprocessing", fa["preprocessing"], fb["preprocessing"])
        add("augmentation", fa["augmentation"], fb["augmentation"])
        add("seeds", fa["seeds"], fb["seeds"])
        add("loss", fa["loss"], fb["loss"])
        add("budget: epochs", fa["epochs"], fb["epochs"])
        add("budget: optimisation steps", fa["steps"], fb["steps"])
        add("batch size", fa["batch_size"], fb["batch_size"])
        add("image size", fa["image_size"], fb["image_size"])
        add("teacher backbone", fa["backbone"], fb["backbone"], by_design=True,
            note="what the comparison is about" if fa["backbone"] != fb["backbone"] else "")
        add("decoder family", fa["decoder"], fb["decoder"], by_design=fa["backbone"] != fb["backbone"],
            note="the decoder mirrors its teacher" if fa["decoder"] != fb["decoder"] else "")
        add("optimiser and schedule (setting)", fa["setting_params"], fb["setting_params"], by_design=True,
            note=("the setting differs: the comparison measures backbone and recipe together"
                  if fa["setting_params"] != fb["setting_params"] and fa["backbone"] != fb["backbone"] else ""))
        add("teacher pretraining", fa["weights"], fb["weights"])

        flags = []
        rnd = [f for f in (fa, fb) if f["random"]]
        if rnd:
            who = " and ".join(f"{f['arm']} (weights: {f['weights']})" for f in rnd)
            flags.append({"kind": "RANDOM-INIT TEACHER", "arms": [f["arm"] for f in rnd],
                          "text": f"{who} {'use' if len(rnd) > 1 else 'uses'} a randomly initialised, frozen "
                                  f"teacher. {RANDOM_INIT_MEANING}"})
        if fa["weights"] != fb["weights"]:
            flags.append({"kind": "TEACHER PRETRAINING DIFFERS", "arms": [a, b],
                          "text": f"{a} uses weights '{fa['weights']}', {b} uses '{fb['weights']}'. Any difference "
                                  "mixes the architecture with the pretraining, so it cannot be attributed to the "
                                  "backbone."})
        unfair = [i["aspect"] for i in items if i["status"] == "different" and i["aspect"] != "teacher pretraining"]
        if unfair:
            flags.append({"kind": "NOT THE SAME PROTOCOL", "arms": [a, b],
                          "text": f"these differ between the arms although the protocol keeps them equal: "
                                  f"{', '.join(unfair)}. The difference in results may come from them."})
        name = f"{b} vs {a}"
        sections.append({"name": name, "arm_a": a, "arm_b": b, "aspects": items, "flags": flags,
                         "kinds": list(dict.fromkeys(f["kind"] for f in flags))})
        for fl in flags:
            if fl["kind"] == "RANDOM-INIT TEACHER":
                continue
            loud.append({"comparison": name, "kind": fl["kind"], "text": fl["text"]})
    rnd_arms = [a for a in facts if facts[a]["random"]]
    rnd_comps = [s["name"] for s in sections if "RANDOM-INIT TEACHER" in s["kinds"]]
    if rnd_arms:
        loud.insert(0, {"comparison": ", ".join(rnd_comps) or "no comparison",
                        "kind": "RANDOM-INIT TEACHER",
                        "text": f"{', '.join(rnd_arms)} "
                                f"{'use' if len(rnd_arms) > 1 else 'uses'} a randomly initialised, frozen teacher "
                                f"(weights: {_joined(facts[a]['weights'] for a in rnd_arms)}). {RANDOM_INIT_MEANING}"})
    return sections, loud


def _main_tables(summary, arms: list[str]) -> dict:
    metrics = [(m, lbl) for m, lbl in METRICS if m in summary.columns and summary[m].notna().any()]
    overall = []
    best = {}
    for arm in arms:
        sub = summary[summary["arm"] == arm]
        cells = {}
        for m, _ in metrics:
            per_seed = sub.groupby("seed")[m].mean()
            cells[m] = _mean_sd_ci(per_seed.to_numpy())
        overall.append({"arm": arm, "n_seeds": int(sub["seed"].nunique()), "n_categories": int(sub["category"].nunique()),
                        "cells": cells})
    for m, _ in metrics:
        vals = [r["cells"][m]["mean"] for r in overall if _finite(r["cells"][m]["mean"])]
        best[m] = max(vals) if vals else math.nan
    for r in overall:
        r["cells"] = [{"metric": m, "text": f"{fmt_pt(c['mean'])} ± {fmt_pt(c['sd'])}",
                       "ci": f"[{fmt_pt(c['lo'])}, {fmt_pt(c['hi'])}]" if _finite(c["lo"]) else "",
                       "best": _finite(c["mean"]) and c["mean"] == best[m]} for m, c in r["cells"].items()]

    categories = sorted(set(summary["category"]))
    per_metric = []
    for m, lbl in metrics:
        rows = []
        for cat in categories:
            cells = []
            for arm in arms:
                v = summary.loc[(summary["arm"] == arm) & (summary["category"] == cat), m]
                s = _mean_sd_ci(v.to_numpy())
                cells.append({"mean": s["mean"], "text": f"{fmt_pt(s['mean'])} ± {fmt_pt(s['sd'])}" if s["n"] else "—"})
            top = max([c["mean"] for c in cells if _finite(c["mean"])], default=math.nan)
            for c in cells:
                c["best"] = _finite(c["mean"]) and c["mean"] == top
            rows.append({"category": cat, "cells": cells})
        per_metric.append({"metric": m, "label": lbl, "rows": rows})
    return {"metrics": metrics, "overall": overall, "per_metric": per_metric, "categories": categories}


def _verdict(row: dict, flags: list[dict]) -> dict:
    label = METRIC_LABEL.get(row["metric"], row["metric"])
    n = int(row["n"]) if _finite(row["n"]) else 0
    unit = row.get("unit") or ("categories" if row["reading"] == "across_categories" else "seeds")
    unit_txt = {"categories": "category", "seeds": "seed"}.get(unit, unit) if n == 1 else unit
    diff = float(row["mean_diff"]) if _finite(row["mean_diff"]) else math.nan
    lo, hi = row["ci_low"], row["ci_high"]
    big = max(abs(v) for v in (diff, lo, hi) if _finite(v)) * 100 if any(_finite(v) for v in (diff, lo, hi)) else 0
    digits = 1 if big >= 1 else 2
    parts = [f"{fmt_pt(diff, digits, signed=True)} pt {label}"] if n else [f"no paired runs for {label}"]
    if _finite(lo) and _finite(hi):
        parts.append(f"95% CI [{fmt_pt(lo, digits, signed=False)}, {fmt_pt(hi, digits, signed=False)}]")
    if _finite(row["p_holm"]):
        ph = fmt_p(row["p_holm"])
        parts.append(f"p_holm {ph}" if ph.startswith("<") else f"p_holm = {ph}")
    parts.append(f"n = {n} {unit_txt}")
    if _finite(row["p_holm"]):
        if float(row["p_holm"]) < ALPHA:
            concl = f"significant (Holm, α = {ALPHA})"
            kind = "sig"
        else:
            concl = "not significant"
            kind = "ns"
    else:
        concl = "no test possible"
        kind = "na"
    details = []
    if kind == "na" and row.get("note"):
        details.append(str(row["note"]))
    if kind == "ns" and n < 5:
        details.append(f"with n = {n} the test has little power: 'not significant' does not mean 'no difference'")
    if _finite(row.get("d_z")):
        details.append(f"d_z = {fmt_num(row['d_z'])}")
    if _finite(row.get("boot_ci_low")):
        details.append(f"bootstrap 95% CI [{fmt_pt(row['boot_ci_low'], digits)}, {fmt_pt(row['boot_ci_high'], digits)}] pt")
    return {"text": f"{row['comparison']}: {', '.join(parts)} — {concl}", "kind": kind,
            "details": "; ".join(details), "flags": list(dict.fromkeys(f["kind"] for f in flags))}


def _standard_wilcoxon_note(r: dict) -> bool:
    note = str(r.get("wilcoxon_note") or "")
    return (not note or note.startswith("n = ") or note.startswith("two-sided, scipy method 'auto'")
            and "dropped" not in note or note == "no pairs")


def _stats_section(stats, comparisons, fair_flags: dict[str, list]) -> dict:
    records = stats.to_dict("records")
    across = [r for r in records if r["reading"] == "across_categories"]
    per_cat = [r for r in records if r["reading"] != "across_categories"]
    verdicts = []
    for m, lbl in METRICS:
        rows = [r for r in across if r["metric"] == m]
        if not rows:
            continue
        verdicts.append({"metric": m, "label": lbl, "headline": m in HEADLINE_METRICS,
                         "rows": [_verdict(r, fair_flags.get(r["comparison"], [])) for r in rows]})
    per_cat_verdicts = {}
    for r in per_cat:
        if r["metric"] == "image_auroc":
            per_cat_verdicts.setdefault(r["comparison"], []).append(
                {"category": r["reading"].split(":", 1)[1], **_verdict(r, [])})

    def table(rows):
        out = []
        for r in rows:
            out.append({"comparison": r["comparison"], "metric": METRIC_LABEL.get(r["metric"], r["metric"]),
                        "reading": r["reading"], "n": fmt_int(r["n"]),
                        "mean_a": fmt_pt(r["mean_a"], 2), "mean_b": fmt_pt(r["mean_b"], 2),
                        "diff": fmt_pt(r["mean_diff"], 2, signed=True),
                        "ci": f"[{fmt_pt(r['ci_low'], 2)}, {fmt_pt(r['ci_high'], 2)}]" if _finite(r["ci_low"]) else "—",
                        "boot": f"[{fmt_pt(r['boot_ci_low'], 2)}, {fmt_pt(r['boot_ci_high'], 2)}]"
                        if _finite(r.get("boot_ci_low")) else "—",
                        "t": fmt_num(r["t"]), "p": fmt_p(r["p"]), "p_holm": fmt_p(r["p_holm"]),
                        "sig": _finite(r["p_holm"]) and float(r["p_holm"]) < ALPHA,
                        "wilcoxon": fmt_p(r["wilcoxon_p"]) if _finite(r["wilcoxon_p"]) else
                        ("n < 6" if _finite(r["n"]) and 1 < float(r["n"]) < 6 else "—"),
                        "wilcoxon_note": r.get("wilcoxon_note") or "",
                        "d_z": fmt_num(r["d_z"]),
                        # the standard "n < 6" Wilcoxon explanation is in the legend and the cell's tooltip
                        "note": "; ".join(x for x in (r.get("note") or "",
                                                       "" if _standard_wilcoxon_note(r) else
                                                       f"Wilcoxon: {r.get('wilcoxon_note')}") if x)})
        return out

    # per category: win counts of arm_b over arm_a in image AUROC
    wins = []
    for a, b in comparisons:
        name = f"{b} vs {a}"
        rows = [r for r in per_cat if r["comparison"] == name and r["metric"] == "image_auroc" and _finite(r["mean_diff"])]
        wins.append({"comparison": name, "higher": sum(float(r["mean_diff"]) > 0 for r in rows),
                     "lower": sum(float(r["mean_diff"]) < 0 for r in rows), "n": len(rows)})
    return {"verdicts": verdicts, "across": table(across), "per_category": table(per_cat),
            "per_cat_verdicts": per_cat_verdicts, "wins": wins}


def _cost_section(summary, arms, colors) -> tuple[dict, bytes]:
    rows = []
    pts = []
    for arm in arms:
        sub = summary[summary["arm"] == arm]
        first = sub.iloc[0]

        def mean_sd(col, fmt=fmt_duration):
            if col not in sub.columns or not sub[col].notna().any():
                return "—"
            s = _mean_sd_ci(sub[col].to_numpy())
            return f"{fmt(s['mean'])} ± {fmt(s['sd'])}" if s["n"] > 1 else fmt(s["mean"])

        def g(col):
            return first[col] if col in sub.columns else math.nan

        rows.append({"arm": arm, "p_teacher": fmt_millions(g("params_teacher")),
                     "p_student": fmt_millions(g("params_student")), "p_total": fmt_millions(g("params_total")),
                     "g_teacher": fmt_num(g("gflops_teacher"), 3), "g_student": fmt_num(g("gflops_student"), 3),
                     "g_total": fmt_num(g("gflops_total"), 3), "latency": fmt_num(g("latency_ms_batch1"), 1),
                     "throughput": fmt_num(g("throughput_img_s"), 1),
                     "train": mean_sd("train_seconds"), "eval": mean_sd("eval_seconds"),
                     "mem": mean_sd("peak_mem_mb", lambda x: fmt_num(x, 0)),
                     "bench_train": mean_sd("bench_train_s"),
                     "bench_rss": mean_sd("bench_train_max_rss_mb", lambda x: fmt_num(x, 0))})
        if "image_auroc" in sub.columns:
            per_seed = sub.groupby("seed")["image_auroc"].mean()
            s = _mean_sd_ci(per_seed.to_numpy())
            pts.append((arm, g("gflops_total"), s["mean"], s["sd"]))

    usable = [p for p in pts if _finite(p[1]) and _finite(p[2])]
    if usable:
        fig = _figure(5.6, 3.4)
        ax = fig.add_subplot()
        for arm, x, y, sd in usable:
            ax.errorbar([x], [y * 100], yerr=[sd * 100] if _finite(sd) else None, fmt="o", color=colors[arm],
                        capsize=3, label=arm)
            ax.annotate(arm, (x, y * 100), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xlabel("GFLOPs per image (teacher + student, fvcore)")
        ax.set_ylabel("image AUROC (%)")
        ax.set_title("Accuracy vs cost (error bar: sd over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        png = _png(fig)
    else:
        png = _placeholder("no complexity data (GFLOPs) or no image AUROC: scatter not drawn")
    return {"rows": rows}, png


def _interp_curve(curve: dict, xkey: str, ykey: str, grid: np.ndarray) -> np.ndarray | None:
    try:
        x = np.asarray(curve[xkey], dtype=float)
        y = np.asarray(curve[ykey], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if x.size < 2 or x.size != y.size:
        return None
    order = np.argsort(x, kind="stable")
    return np.interp(grid, x[order], y[order], right=np.nan if xkey == "fpr" and ykey == "pro" else y[order][-1])


def _curves_section(runs: list[Run], arms, categories, colors) -> dict:
    import pandas as pd

    figs: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    # ---- training loss
    loss: dict[str, dict] = {a: {} for a in arms}
    evals: dict[str, dict[str, dict]] = {"image_auroc": {a: {} for a in arms}, "pixel_auroc": {a: {} for a in arms}}
    max_epoch = 0
    for r in runs:
        if r.history is None or r.row["arm"] not in loss:
            continue
        h = r.history.sort_values("epoch")
        max_epoch = max(max_epoch, int(h["epoch"].max()))
        key = (r.row["category"], int(r.row["seed"]))
        loss[r.row["arm"]][key] = h.set_index("epoch")["loss"]
        for m in evals:
            if m in h.columns:
                s = pd.to_numeric(h[m], errors="coerce")
                if s.notna().any():
                    evals[m][r.row["arm"]][key] = pd.Series(s.to_numpy(), index=h["epoch"].to_numpy()).dropna()
    epochs = np.arange(1, max_epoch + 1)

    def on_epochs(series_map):
        out = {}
        for k, s in series_map.items():
            arr = np.full(max_epoch, np.nan)
            idx = np.asarray(s.index, dtype=float)
            ok = (idx >= 1) & (idx <= max_epoch) & (idx == np.round(idx))
            arr[idx[ok].astype(int) - 1] = np.asarray(s.to_numpy(), dtype=float)[ok]
            out[k] = arr
        return out

    if any(loss.values()):
        fig = _figure(5.6, 3.2)
        ax = fig.add_subplot()
        for arm in arms:
            if not loss[arm]:
                continue
            mean, lo, hi = _seed_band(on_epochs(loss[arm]))
            ax.plot(epochs, mean, color=colors[arm], label=arm, lw=1.5)
            ax.fill_between(epochs, lo, hi, color=colors[arm], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss (mean over seeds of the category mean; band: min–max over seeds)", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figs["loss"] = _png(fig)
        fig, axes = _grid(len(categories))
        for ax, cat in zip(axes, categories):
            for arm in arms:
                sub = {k: v for k, v in on_epochs(loss[arm]).items() if k[0] == cat}
                if sub:
                    mean, lo, hi = _seed_band(sub)
                    ax.plot(epochs, mean, color=colors[arm], lw=1.2, label=arm)
                    ax.fill_between(epochs, lo, hi, color=colors[arm], alpha=0.2, lw=0)
            ax.set_title(cat, fontsize=8)
            ax.tick_params(labelsize=6)
        axes[0].legend(fontsize=6)
        figs["loss_per_category"] = _png(fig)
    else:
        figs["loss"] = _placeholder("no history.csv found: training loss not drawn")
        notes["loss"] = "No readable history.csv in any run folder: training loss not drawn."

    have_eval = any(evals[m][a] for m in evals for a in arms)
    if have_eval:
        fig = _figure(7.2, 3.0)
        axes = fig.subplots(1, 2)
        for ax, m in zip(axes, evals):
            for arm in arms:
                if evals[m][arm]:
                    mean, lo, hi = _seed_band(on_epochs(evals[m][arm]))
                    ok = ~np.isnan(mean)
                    ax.plot(epochs[ok], mean[ok] * 100, "o-", ms=2.5, color=colors[arm], label=arm, lw=1.2)
                    ax.fill_between(epochs[ok], lo[ok] * 100, hi[ok] * 100, color=colors[arm], alpha=0.2, lw=0)
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{METRIC_LABEL[m]} (%)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("Test metrics recorded during training (mean over seeds; band: min–max)", fontsize=8)
        figs["eval_metrics"] = _png(fig)
    else:
        figs["eval_metrics"] = _placeholder("test metrics were not recorded during training (eval_every = 0)")
        notes["eval_metrics"] = ("Test metrics were not recorded during training (eval_every = 0 in the config); "
                                 "set eval_every > 0 to see image/pixel AUROC against epoch.")

    # ---- ROC / PRO
    specs = [("image_roc", "fpr", "tpr", np.linspace(0, 1, 201), "image ROC", "FPR", "TPR"),
             ("pixel_roc", "fpr", "tpr", np.linspace(0, 1, 201), "pixel ROC", "FPR", "TPR"),
             ("pro", "fpr", "pro", np.linspace(0, 0.3, 151), "PRO (FPR ≤ 0.3)", "FPR", "PRO")]
    data: dict[str, dict[str, dict]] = {s[0]: {a: {} for a in arms} for s in specs}
    for r in runs:
        if r.row["arm"] not in arms:
            continue
        for name, xk, yk, grid, *_ in specs:
            c = r.curves.get(name) if isinstance(r.curves, dict) else None
            if isinstance(c, dict):
                y = _interp_curve(c, xk, yk, grid)
                if y is not None:
                    data[name][r.row["arm"]][(r.row["category"], int(r.row["seed"]))] = y
    if any(data[s[0]][a] for s in specs for a in arms):
        fig = _figure(9.6, 3.1)
        axes = fig.subplots(1, 3)
        for ax, (name, _, _, grid, title, xl, yl) in zip(axes, specs):
            for arm in arms:
                if data[name][arm]:
                    mean, lo, hi = _seed_band(data[name][arm])
                    ax.plot(grid, mean, color=colors[arm], lw=1.3, label=arm)
                    ax.fill_between(grid, lo, hi, color=colors[arm], alpha=0.15, lw=0)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, loc="lower right")
        fig.suptitle("Vertical average over categories, then mean over seeds (band: min–max over seeds)", fontsize=8)
        figs["curves"] = _png(fig)
        for name, _, _, grid, title, xl, yl in specs:
            fig, axes = _grid(len(categories), 2.3, 1.9)
            for ax, cat in zip(axes, categories):
                for arm in arms:
                    sub = {k: v for k, v in data[name][arm].items() if k[0] == cat}
                    if sub:
                        mean, lo, hi = _seed_band(sub)
                        ax.plot(grid, mean, color=colors[arm], lw=1.1, label=arm)
                ax.set_title(cat, fontsize=8)
                ax.tick_params(labelsize=6)
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=5.5, loc="lower right")
            fig.suptitle(f"{title} per category (mean over seeds)", fontsize=8)
            figs[f"{name}_per_category"] = _png(fig)
    else:
        figs["curves"] = _placeholder("no curves.json found: ROC/PRO curves not drawn")
        notes["curves"] = "No readable curves.json in any run folder: ROC and PRO curves not drawn."
    return figs, notes


def _defect_section(summary, arms) -> list[dict]:
    cols = [c for c in summary.columns if c.startswith("defect_auroc:")]
    out = []
    for cat in sorted(set(summary["category"])):
        sub = summary[summary["category"] == cat]
        rows = []
        for col in cols:
            if not sub[col].notna().any():
                continue
            cells = []
            for arm in arms:
                s = _mean_sd_ci(sub.loc[sub["arm"] == arm, col].to_numpy())
                cells.append({"mean": s["mean"], "text": f"{fmt_pt(s['mean'])} ± {fmt_pt(s['sd'])}" if s["n"] else "—"})
            top = max([c["mean"] for c in cells if _finite(c["mean"])], default=math.nan)
            for c in cells:
                c["best"] = _finite(c["mean"]) and c["mean"] == top
            rows.append({"type": col.split(":", 1)[1], "cells": cells})
        if rows:
            worst = min(rows, key=lambda r: min([c["mean"] for c in r["cells"] if _finite(c["mean"])], default=1.0))
            out.append({"category": cat, "rows": rows, "hardest": worst["type"]})
    return out


def _failure_png(image, mask, amap, threshold, size: int = 112) -> bytes:
    """Image | ground truth | map overlay side by side, drawn with numpy + Pillow (fast, no axes).

    Overlay colours: jet from the map minimum to the larger of map maximum and threshold; the
    ground-truth outline is drawn in white on the overlay.
    """
    from matplotlib import colormaps
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.uint8)
    m = np.nan_to_num(np.asarray(amap, dtype=np.float32))
    msk = np.asarray(mask, dtype=bool)
    vmin = float(m.min()) if m.size else 0.0
    vmax = max(float(m.max()) if m.size else 1.0, float(threshold) if _finite(threshold) else -np.inf, vmin + 1e-6)
    heat = colormaps["jet"](np.clip((m - vmin) / (vmax - vmin), 0, 1))[..., :3] * 255
    overlay = (0.55 * img + 0.45 * heat).astype(np.uint8)
    if msk.any():
        edge = msk & ~(np.roll(msk, 1, 0) & np.roll(msk, -1, 0) & np.roll(msk, 1, 1) & np.roll(msk, -1, 1))
        overlay[edge] = 255
    gt = np.repeat((msk * 255).astype(np.uint8)[..., None], 3, axis=2)
    panels = [Image.fromarray(p).resize((size, size), Image.BILINEAR if p is not gt else Image.NEAREST)
              for p in (img, gt, overlay)]
    gap = 3
    canvas = Image.new("RGB", (3 * size + 2 * gap, size), (255, 255, 255))
    for i, p in enumerate(panels):
        canvas.paste(p, (i * (size + gap), 0))
    buf = io.BytesIO()
    # a 256-colour palette keeps a thumbnail triplet near 15 KB instead of 45 KB
    canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _failure_section(runs: list[Run], arms, k: int) -> list[dict]:
    out = []
    for arm in arms:
        cands = {"missed_defect": [], "false_alarm": []}
        problems = []
        for r in runs:
            if r.row["arm"] != arm or r.failure_path is None:
                continue
            try:
                with np.load(r.failure_path, allow_pickle=False) as z:
                    kinds = z["kinds"].astype(str)
                    scores = z["scores"].astype(float)
                    thr = float(z["threshold"])
            except Exception as exc:  # a corrupt npz or an object array (refused: no pickle)
                problems.append(f"{r.failure_path}: unreadable ({type(exc).__name__})")
                continue
            for i, (kind, score) in enumerate(zip(kinds, scores)):
                if kind in cands:
                    # signed distance beyond the threshold, relative to it: > 0 is a real failure.
                    # evaluate stores the k lowest-scored defects and the k highest-scored good
                    # images, which need not be failures when a run makes fewer than k errors.
                    scale = abs(thr) if thr != 0 else 1.0
                    badness = (thr - score) / scale if kind == "missed_defect" else (score - thr) / scale
                    failed = score < thr if kind == "missed_defect" else score >= thr
                    cands[kind].append((badness, failed, r, i, thr, score))
        groups = []
        for kind, title in (("missed_defect", "Missed defects (defect scored below the threshold)"),
                            ("false_alarm", "False alarms (good image scored at or above the threshold)")):
            top = sorted(cands[kind], key=lambda c: -c[0])[:k]
            cases = []
            for badness, failed, r, i, thr, score in top:
                with np.load(r.failure_path, allow_pickle=False) as z:
                    png = _failure_png(z["images"][i], z["masks"][i], z["maps"][i], thr)
                    path = str(z["paths"][i]) if "paths" in z.files else ""
                    dtype = str(z["defect_types"][i]) if "defect_types" in z.files else ""
                side = "below" if score < thr else "above"
                if failed:
                    verdict = "missed" if kind == "missed_defect" else "false alarm"
                else:
                    verdict = ("detected: shown as one of the lowest-scored defects" if kind == "missed_defect"
                               else "not flagged: shown as one of the highest-scored good images")
                cases.append({"src": _data_uri(png), "category": r.row["category"], "seed": int(r.row["seed"]),
                              "path": path, "defect_type": dtype, "score": f"{score:.4g}", "threshold": f"{thr:.4g}",
                              "margin": f"{100 * abs(badness):.1f}% {side}", "failed": failed, "verdict": verdict})
            groups.append({"kind": kind, "title": title, "cases": cases, "available": len(cands[kind]),
                           "failures": sum(1 for c in cands[kind] if c[1])})
        n_runs = sum(1 for r in runs if r.row["arm"] == arm)
        n_with = sum(1 for r in runs if r.row["arm"] == arm and r.failure_path is not None)
        out.append({"arm": arm, "groups": groups, "problems": problems, "n_runs": n_runs, "n_with": n_with})
    return out


def _reproduce(cfg: dict, config_path: Path, summary_path: Path, stats_path: Path, manifests, out: Path,
               comparisons, commit: str, figures_dir) -> dict:
    """Copy-pasteable commands; every value from config or paths is shell-quoted."""
    import shlex

    import yaml

    q = lambda x: shlex.quote(str(x))  # noqa: E731
    cv = _config_view(cfg)
    cmds = [f"git checkout {q(commit)}" if commit != "unknown" else "# git commit unknown: use the code that built this report",
            "pip install -e '.[test]'",
            f"snakemake --cores 8 --configfile {q(config_path)}"]
    stats_cmd = f"python -m rd stats --summary {q(summary_path)} " + " ".join(
        f"--comparison {q(a)} {q(b)}" for a, b in comparisons) + f" --out {q(stats_path)}"
    rep_cmd = (f"python -m rd report --summary {q(summary_path)} --stats {q(stats_path)} --config {q(config_path)}"
               + (" --data-manifests " + " ".join(q(m) for m in manifests) if manifests else "")
               + f" --out {q(out)}" + (f" --figures-dir {q(figures_dir)}" if figures_dir else ""))
    one_run = []
    arms = cfg.get("arms") or []
    cats = cv["categories"]
    seeds = cfg.get("seeds") or [0]
    if arms and cats:
        bb, _, setting = str(arms[0]).partition("/")
        w = ((cfg.get("backbones") or {}).get(bb) or {}).get("weights", "none")
        sp = json.dumps((cfg.get("settings") or {}).get(setting, {}), separators=(",", ":"))
        run_dir = f"results/runs/{cv['dataset']}/{cats[0]}/{bb}/{setting}/seed{seeds[0]}"
        dev = cfg.get("device", "auto")
        one_run = [f"python -m rd train --data-root {q(cv['root'])} --category {q(cats[0])} --backbone {q(bb)} "
                   f"--weights {q(w)} --setting-name {q(setting)} --setting {q(sp)} "
                   f"--image-size {q(cfg.get('image_size'))} --epochs {q(cfg.get('epochs'))} "
                   f"--batch-size {q(cfg.get('batch_size'))} --seed {q(seeds[0])} --device {q(dev)} "
                   f"--out-dir {q(run_dir)}",
                   f"python -m rd evaluate --data-root {q(cv['root'])} --category {q(cats[0])} "
                   f"--model {q(run_dir + '/model.pt')} --device {q(dev)} --out-dir {q(run_dir)}"]
    return {"pipeline": cmds, "steps": [stats_cmd, rep_cmd], "one_run": one_run,
            "config_yaml": yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=None)}


# =========================================================================== entry point
def build_report(summary: str | Path, stats: str | Path, config: str | Path, manifests: Sequence[str | Path] = (),
                 out: str | Path = "reports/report.html", figures_dir: str | Path | None = None,
                 *, failure_k: int = 4) -> Path:
    """Build the HTML report; also write the main figures as PNG into ``figures_dir`` when given
    (``cost_vs_auroc.png``, ``loss.png``, ``eval_metrics.png``, ``curves.png``, always all four)."""
    import jinja2

    from rd.aggregate import read_summary
    from rd.io import write_bytes, write_text
    from rd.stats import read_stats

    summary_path, stats_path, config_path, out = Path(summary), Path(stats), Path(config), Path(out)
    sm = read_summary(summary_path)
    if sm.empty:
        raise RDError(f"Summary {summary_path} has no runs.", "run train/evaluate and `python -m rd aggregate` first.")
    st = read_stats(stats_path)
    cfg = load_config(config_path)
    man = _load_manifests(manifests)
    cv = _config_view(cfg)

    arms = _ordered_arms(sm, cfg)
    colors = _arm_colors(arms)
    comparisons = list(dict.fromkeys(zip(st["arm_a"], st["arm_b"]))) or \
        [tuple(c) for c in (cfg.get("comparisons") or [])]
    comparisons = [(a, b) for a, b in comparisons if a in arms and b in arms]
    runs = [_load_run(row, summary_path) for row in sm.to_dict("records")]

    facts = {a: _arm_facts(a, runs, cfg) for a in arms}
    fairness, loud = _fairness(comparisons, facts, man)
    fair_flags = {f["name"]: f["flags"] for f in fairness}
    main = _main_tables(sm, arms)
    stats_ctx = _stats_section(st, comparisons, fair_flags)
    cost, cost_png = _cost_section(sm, arms, colors)
    figs, fig_notes = _curves_section(runs, arms, main["categories"], colors)
    figs["cost_vs_auroc"] = cost_png
    defects = _defect_section(sm, arms)
    failures = _failure_section(runs, arms, failure_k)

    git = _git_commit()
    devices = sorted({str(r.train.get("device")) for r in runs if r.train.get("device")}) or [str(cfg.get("device", "unknown"))]
    total_train = float(np.nansum(sm["train_seconds"])) if "train_seconds" in sm else math.nan
    total_eval = float(np.nansum(sm["eval_seconds"])) if "eval_seconds" in sm else math.nan
    bench_cols = [c for c in ("bench_train_s", "bench_eval_s") if c in sm.columns and sm[c].notna().any()]
    bench_total = float(np.nansum(sm[bench_cols].to_numpy())) if bench_cols else math.nan
    cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    problems = [(str(r.row.get("run_dir")), p) for r in runs for p in r.problems]

    header = {
        "dataset": cv["dataset"], "root": cv["root"], "categories": main["categories"],
        "config_categories": cv["categories"], "arms": arms,
        "seeds": sorted({int(s) for s in sm["seed"]}), "n_runs": len(sm),
        "epochs": cfg.get("epochs"), "batch_size": cfg.get("batch_size"), "image_size": cfg.get("image_size"),
        "config_path": str(config_path), "config_hash": cfg_hash,
        "commit": git["commit"], "dirty": git["dirty"],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "devices": devices, "packages": _package_versions(),
        "compute": fmt_duration(total_train + total_eval),
        "compute_detail": f"training {fmt_duration(total_train)} + evaluation {fmt_duration(total_eval)}, "
                          f"summed over {len(sm)} runs",
        "bench_total": fmt_duration(bench_total) if _finite(bench_total) else None,
        "host": os.uname().nodename if hasattr(os, "uname") else "unknown",
    }
    missing_cats = [c for c in cv["categories"] if c not in main["categories"]]

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    images = {k: _data_uri(v) for k, v in figs.items()}
    html = env.get_template("report.html.j2").render(
        h=header, loud=loud, fairness=fairness, main=main, stats=stats_ctx, cost=cost, figs=images,
        defects=defects, failures=failures, fig_notes=fig_notes, failure_k=failure_k, arms=arms, comparisons=comparisons,
        manifests=man, missing_cats=missing_cats, problems=problems,
        repro=_reproduce(cfg, config_path, summary_path, stats_path, list(manifests), out, comparisons,
                         git["commit"], figures_dir),
        colors={a: "#%02x%02x%02x" % tuple(int(255 * c) for c in colors[a][:3]) for a in arms},
        alpha=ALPHA,
    )
    write_text(out, html)
    if figures_dir is not None:
        for name in MAIN_FIGURES:
            write_bytes(Path(figures_dir) / f"{name}.png", figs[name])
    return out
