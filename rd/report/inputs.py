"""Everything the report reads: config, data manifests, per-run files, git and package versions.

Per-run files are read from each summary row's ``run_dir`` (as written, else relative to the
summary's folder and its parents, so a results tree that was moved still resolves):
``train.json``, ``history.csv``, ``curves.json``, ``failure_cases.npz`` (only its path; it is
opened later with ``allow_pickle=False``) and ``scores.csv`` (test-set paths, hashed for the
fairness audit). A missing or unreadable per-run file becomes a line in ``Run.problems``, never
an exception: the report must still show what it can. A missing config or manifest, which
the user passed by name, is an ``RDError``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rd.errors import RDError
from rd.files import read_json_object

PACKAGES = ["rd-backbones", "torch", "torchvision", "timm", "numpy", "scipy", "pandas", "scikit-learn",
            "scikit-image", "fvcore", "matplotlib", "jinja2", "snakemake"]


@dataclass
class Run:
    """One summary row and what its run folder holds.

    ``row`` is the summary.csv row; ``train`` the parsed train.json ({} when missing);
    ``history`` the history.csv frame (None when missing or without epoch/loss);
    ``curves`` the parsed curves.json; ``test_hash`` the sha256 of the sorted test-image paths
    of scores.csv; ``problems`` what could not be read, one sentence each.
    """

    row: dict
    run_dir: Path | None
    train: dict = field(default_factory=dict)
    history: Any = None
    curves: dict = field(default_factory=dict)
    failure_path: Path | None = None
    test_hash: str | None = None
    problems: list[str] = field(default_factory=list)


def load_config(path: str | Path) -> dict:
    """The resolved config (JSON or YAML) as a mapping."""
    path = Path(path)
    if not path.is_file():
        raise RDError(f"Config {path} does not exist.", "pass the resolved config (JSON or YAML) with --config.")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except Exception as exc:  # json or yaml error: both say where
        raise RDError(f"Config {path} cannot be parsed: {str(exc).splitlines()[0]}.",
                      "pass the resolved config the workflow wrote (JSON or YAML).") from exc
    if not isinstance(config, dict):
        raise RDError(f"Config {path} is not a mapping.", "pass the resolved config the workflow wrote.")
    return config


def dataset_of_config(config: dict) -> dict:
    """``{"dataset", "root", "categories"}`` from either config layout.

    The workflow writes ``dataset: {name, root, categories}``; older configs had
    ``dataset: <name>`` with ``data_root`` and a top-level ``categories``.
    """
    dataset = config.get("dataset")
    if isinstance(dataset, dict):
        name, root, categories = dataset.get("name"), dataset.get("root"), dataset.get("categories")
    else:
        name, root, categories = dataset, config.get("data_root") or config.get("root"), None
    categories = config.get("categories") or categories or []
    return {"dataset": str(name) if name is not None else "unknown", "root": root, "categories": list(categories)}


def load_manifests(paths: Sequence[str | Path]) -> dict[str, dict]:
    """prepare-data manifests keyed by category."""
    by_category = {}
    for p in paths:
        p = Path(p)
        manifest = read_json_object(p, "Data manifest", "run `python -m rd prepare-data` for that category.",
                                    "delete it and rerun `python -m rd prepare-data`.")
        by_category[str(manifest.get("category", p.stem))] = manifest
    return by_category


def resolve_run_dir(run_dir: str, summary_path: Path) -> Path | None:
    """The run folder as written, else relative to the summary's folder or up to 3 parents."""
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


def load_run(row: dict, summary_path: Path) -> Run:
    """Read one run folder; what is missing goes to ``Run.problems``."""
    import pandas as pd

    run = Run(row=row, run_dir=resolve_run_dir(str(row.get("run_dir", "")), summary_path))
    if run.run_dir is None:
        run.problems.append(f"run folder {row.get('run_dir')!r} not found")
        return run
    folder = run.run_dir
    try:
        run.train = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run.problems.append("train.json missing or unreadable")
    try:
        history = pd.read_csv(folder / "history.csv")
        run.history = history if {"epoch", "loss"} <= set(history.columns) else None
        if run.history is None:
            run.problems.append("history.csv lacks epoch/loss columns")
    except (OSError, ValueError):
        run.problems.append("history.csv missing or unreadable")
    try:
        run.curves = json.loads((folder / "curves.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run.problems.append("curves.json missing or unreadable")
    if (folder / "failure_cases.npz").is_file():
        run.failure_path = folder / "failure_cases.npz"
    else:
        run.problems.append("failure_cases.npz missing")
    try:
        paths = pd.read_csv(folder / "scores.csv", usecols=["path"], dtype=str, keep_default_na=False)["path"]
        run.test_hash = hashlib.sha256("\n".join(sorted(paths)).encode("utf-8")).hexdigest()
    except (OSError, ValueError):
        run.problems.append("scores.csv missing or unreadable")
    return run


def git_commit() -> dict:
    """``{"commit", "dirty"}`` of the working directory's repository, else of this package's.

    "unknown" when git is missing or neither is a repository: a report built from an
    installed package must still build.
    """
    package_root = Path(__file__).resolve().parents[2]
    info = {"commit": "unknown", "dirty": False}
    for cwd in (Path.cwd(), package_root):
        try:
            res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return info
        if res.returncode == 0 and res.stdout.strip():
            info["commit"] = res.stdout.strip()
            try:
                status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                        capture_output=True, text=True, timeout=10)
                info["dirty"] = status.returncode == 0 and bool(status.stdout.strip())
            except (OSError, subprocess.SubprocessError):
                pass
            return info
    return info


def package_versions() -> list[tuple[str, str]]:
    """(name, version) of Python and the packages that shape the numbers."""
    from importlib import metadata

    out = [("python", sys.version.split()[0])]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out
