"""Failure cases: per arm, the worst missed defects and false alarms over all its runs.

Each run's ``failure_cases.npz`` (written by evaluate) holds its k lowest-scored defects and
k highest-scored good images with image, mask, map, score and the run's threshold. These are
candidates, not necessarily failures: a run that makes fewer than k errors still stores k.
Here they are ranked by how far the score lies beyond the threshold, relative to it, and each
case says whether it is a real failure. The npz is opened with ``allow_pickle=False``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rd.report.figures import data_uri, failure_png
from rd.report.inputs import Run

KINDS = (("missed_defect", "Missed defects (defect scored below the threshold)"),
         ("false_alarm", "False alarms (good image scored at or above the threshold)"))


def _candidates(runs: Sequence[Run], arm: str) -> tuple[dict[str, list], list[str]]:
    """(badness, failed, run, index, threshold, score) per kind, and unreadable files."""
    candidates: dict[str, list] = {"missed_defect": [], "false_alarm": []}
    problems = []
    for run in runs:
        if run.row["arm"] != arm or run.failure_path is None:
            continue
        try:
            with np.load(run.failure_path, allow_pickle=False) as npz:
                kinds = npz["kinds"].astype(str)
                scores = npz["scores"].astype(float)
                threshold = float(npz["threshold"])
        except Exception as exc:  # a corrupt npz or an object array (refused: no pickle)
            problems.append(f"{run.failure_path}: unreadable ({type(exc).__name__})")
            continue
        scale = abs(threshold) if threshold != 0 else 1.0
        for i, (kind, score) in enumerate(zip(kinds, scores)):
            if kind not in candidates:
                continue
            # signed distance beyond the threshold, relative to it: > 0 is a real failure
            if kind == "missed_defect":
                badness, failed = (threshold - score) / scale, score < threshold
            else:
                badness, failed = (score - threshold) / scale, score >= threshold
            candidates[kind].append((badness, failed, run, i, threshold, score))
    return candidates, problems


def _case(kind: str, badness: float, failed: bool, run: Run, i: int, threshold: float, score: float) -> dict:
    with np.load(run.failure_path, allow_pickle=False) as npz:
        png = failure_png(npz["images"][i], npz["masks"][i], npz["maps"][i], threshold)
        path = str(npz["paths"][i]) if "paths" in npz.files else ""
        defect_type = str(npz["defect_types"][i]) if "defect_types" in npz.files else ""
    side = "below" if score < threshold else "above"
    if failed:
        outcome = "missed" if kind == "missed_defect" else "false alarm"
    else:
        outcome = ("detected: shown as one of the lowest-scored defects" if kind == "missed_defect"
                   else "not flagged: shown as one of the highest-scored good images")
    return {"src": data_uri(png), "category": run.row["category"], "seed": int(run.row["seed"]),
            "path": path, "defect_type": defect_type, "score": f"{score:.4g}", "threshold": f"{threshold:.4g}",
            "margin": f"{100 * abs(badness):.1f}% {side}", "failed": failed, "verdict": outcome}


def failure_section(runs: Sequence[Run], arms: Sequence[str], k: int) -> list[dict]:
    """Per arm: the top ``k`` cases of each kind, how many stored cases are real failures."""
    out = []
    for arm in arms:
        candidates, problems = _candidates(runs, arm)
        groups = []
        for kind, title in KINDS:
            top = sorted(candidates[kind], key=lambda c: -c[0])[:k]
            groups.append({"kind": kind, "title": title, "cases": [_case(kind, *c) for c in top],
                           "available": len(candidates[kind]), "failures": sum(1 for c in candidates[kind] if c[1])})
        of_arm = [r for r in runs if r.row["arm"] == arm]
        out.append({"arm": arm, "groups": groups, "problems": problems, "n_runs": len(of_arm),
                    "n_with": sum(1 for r in of_arm if r.failure_path is not None)})
    return out
