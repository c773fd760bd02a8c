"""Caveats of single arms, and every caveat grouped by kind for the top of the report.

An arm can say nothing about its teacher whatever it is compared with:

* AT CHANCE: the 95% t-interval of its primary metric across categories (seed means per
  category) includes the metric's chance level, 0.5 for AUROC-type metrics. With one category
  the interval is over its seeds instead (said so).
* NOT CONVERGED: its mean training loss (history.csv, averaged over its runs per epoch) still
  fell by more than ``LOSS_DROP`` over the last epoch, or it trained for under a quarter of the
  recipe's epochs (``rd.params.RECIPE``).
* STUDENT CANNOT FIT: a ReLU-output student (non-negative outputs) distilling a teacher whose
  stage features are signed (``results/smoke/<backbone>.json``: ``negative_fraction`` above
  ``NEGATIVE_FRACTION`` at any stage) without the guide's ReLU projection: 1 − cos cannot reach
  0, so its loss has a floor (``loss_floor``).

A comparison involving an AT CHANCE or NOT CONVERGED arm gets no headline at a glance
(``NO_HEADLINE``). Each caveat's meaning is said once (``caveat_groups``), with the arms and
comparisons it affects and the number that triggered it; verdict lines carry only the tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from rd.params import RECIPE
from rd.report.audit import MEANINGS, RANDOM_INIT, RANDOM_INIT_MEANING, ComparisonAudit
from rd.report.facts import ArmFacts
from rd.report.formatting import METRIC_LABEL, finite, fmt_pt, mean_sd_ci
from rd.report.inputs import Run

AT_CHANCE, NOT_CONVERGED, CANNOT_FIT = "AT CHANCE", "NOT CONVERGED", "STUDENT CANNOT FIT"
NO_HEADLINE = (AT_CHANCE, NOT_CONVERGED)
CHANCE_LEVEL = {"image_auroc": 0.5, "pixel_auroc": 0.5}  # AUROC-type metrics: a random score gives 0.5
LOSS_DROP = 0.02
MIN_EPOCH_SHARE = 0.25
NEGATIVE_FRACTION = 0.05
ARM_MEANINGS = {
    AT_CHANCE: "The arm's primary metric is indistinguishable from chance (its 95% CI across categories "
               "includes 0.5): its numbers say nothing about its teacher.",
    NOT_CONVERGED: (f"The arm's training had not converged (mean loss still falling by more than "
                    f"{LOSS_DROP:.0%} over the last epoch, or under {MIN_EPOCH_SHARE:.0%} of the recipe's "
                    f"{RECIPE['epochs']} epochs): its scores may change with more training."),
    CANNOT_FIT: "A ReLU-output student cannot reproduce a teacher's signed features (about half negative): "
                "1 − cos has a floor above 0 for every stage, so the distillation loss cannot go to 0 and the "
                "comparison measures the student's output activation as much as the teacher. Use "
                "student_output: linear for such a teacher.",
}


@dataclass(frozen=True)
class ArmCaveat:
    kind: str
    arm: str
    detail: str


@dataclass
class CaveatGroup:
    """One kind of caveat as shown once at the top: its meaning, the per-arm or per-comparison
    details (what triggered it) and the comparisons it affects."""

    kind: str
    meaning: str
    details: list[str] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)


def at_chance(arm: str, summary, metric: str) -> ArmCaveat | None:
    chance = CHANCE_LEVEL.get(metric)
    if chance is None or metric not in summary.columns:
        return None
    of_arm = summary[summary["arm"] == arm]
    per_category = of_arm.groupby("category")[metric].mean().to_numpy()
    over = f"{len(per_category)} categories"
    if len(per_category) == 1:
        per_category, over = of_arm[metric].to_numpy(), f"the {len(of_arm)} seeds of its one category"
    stats = mean_sd_ci(per_category)
    if not (finite(stats["lo"]) and stats["lo"] <= chance <= stats["hi"]):
        return None
    label = METRIC_LABEL.get(metric, metric)
    return ArmCaveat(AT_CHANCE, arm, f"{arm}: {label} {fmt_pt(stats['mean'])} %, 95% CI [{fmt_pt(stats['lo'])}, "
                                     f"{fmt_pt(stats['hi'])}] across {over} includes {fmt_pt(chance, 0)}")


def not_converged(arm: str, runs: Sequence[Run]) -> ArmCaveat | None:
    own = [r for r in runs if r.row["arm"] == arm]
    reasons = []
    epochs = [float(r.row["epochs"]) for r in own if finite(r.row.get("epochs"))]
    if epochs and max(epochs) < MIN_EPOCH_SHARE * RECIPE["epochs"]:
        reasons.append(f"{int(max(epochs))} of {RECIPE['epochs']} epochs")
    histories = [r.history for r in own if r.history is not None and len(r.history) >= 2]
    if histories:
        import pandas as pd

        mean_loss = pd.concat([h[["epoch", "loss"]] for h in histories]).groupby("epoch")["loss"].mean()
        last, before = float(mean_loss.iloc[-1]), float(mean_loss.iloc[-2])
        drop = (before - last) / before if before > 0 else math.nan
        if finite(drop) and drop > LOSS_DROP:
            reasons.append(f"loss −{drop:.1%} in the last epoch ({before:.3g} → {last:.3g})")
    return ArmCaveat(NOT_CONVERGED, arm, f"{arm}: " + "; ".join(reasons)) if reasons else None


def cannot_fit(facts: ArmFacts, smoke: Mapping[str, dict]) -> ArmCaveat | None:
    """Only when the student's output is recorded as relu and the smoke test measured signed
    teacher features; unknown records claim nothing."""
    record = smoke.get(facts.backbone) or {}
    fractions = record.get("negative_fraction")
    if facts.student_output != "relu" or facts.projection == "guide" or not isinstance(fractions, list):
        return None
    values = [float(v) for v in fractions if finite(v)]
    if not values or max(values) <= NEGATIVE_FRACTION:
        return None
    floor = record.get("loss_floor")
    return ArmCaveat(CANNOT_FIT, facts.arm,
                     f"{facts.arm}: negative teacher features per stage {', '.join(f'{v:.2f}' for v in values)}" +
                     (f", loss floor {float(floor):.2f}" if finite(floor) else ""))


def arm_caveats(arms: Sequence[str], summary, runs: Sequence[Run], facts: Mapping[str, ArmFacts],
                smoke: Mapping[str, dict], primary_metric: str) -> dict[str, list[ArmCaveat]]:
    out = {}
    for arm in arms:
        found = [at_chance(arm, summary, primary_metric), not_converged(arm, runs), cannot_fit(facts[arm], smoke)]
        out[arm] = [c for c in found if c is not None]
    return out


def comparison_tags(audit: ComparisonAudit, by_arm: Mapping[str, list[ArmCaveat]]) -> list[str]:
    """Every caveat kind of a comparison: its audit's and those of its two arms."""
    kinds = list(audit.kinds)
    for arm in (audit.arm_a, audit.arm_b):
        kinds += [c.kind for c in by_arm.get(arm, [])]
    return list(dict.fromkeys(kinds))


def caveat_groups(audits: Sequence[ComparisonAudit], by_arm: Mapping[str, list[ArmCaveat]],
                  facts: Mapping[str, ArmFacts]) -> list[CaveatGroup]:
    """Each caveat kind once: arm caveats first (they void a comparison's headline), then the
    random teacher, then the comparisons' own caveats."""
    groups: dict[str, CaveatGroup] = {}

    def group(kind: str, meaning: str) -> CaveatGroup:
        return groups.setdefault(kind, CaveatGroup(kind, meaning))

    for kind in (AT_CHANCE, NOT_CONVERGED, CANNOT_FIT):
        for arm, cavs in by_arm.items():
            for c in cavs:
                if c.kind == kind:
                    group(kind, ARM_MEANINGS[kind]).details.append(c.detail)
    random_arms = [a for a in facts if facts[a].random_teacher]
    if random_arms:
        inits = sorted({facts[a].random_teacher_init for a in random_arms if facts[a].random_teacher_init})
        g = group(RANDOM_INIT, RANDOM_INIT_MEANING + (f" Initialisation recorded by training: {'; '.join(inits)}."
                                                      if inits else ""))
        g.details.append(", ".join(f"{a} (weights: {facts[a].weights})" for a in random_arms))
    for a in audits:
        for c in a.caveats:
            if c.kind != RANDOM_INIT:
                group(c.kind, MEANINGS.get(c.kind, "")).details.append(f"{a.name}: {c.detail or c.text}")
    for g in groups.values():
        g.comparisons = [a.name for a in audits if g.kind in comparison_tags(a, by_arm)]
    return list(groups.values())


def headline_blocked(audit: ComparisonAudit, by_arm: Mapping[str, list[ArmCaveat]]) -> list[str]:
    """The kinds (AT CHANCE, NOT CONVERGED) that void this comparison's headline."""
    return [k for k in comparison_tags(audit, by_arm) if k in NO_HEADLINE]


__all__ = ["AT_CHANCE", "NOT_CONVERGED", "CANNOT_FIT", "ArmCaveat", "CaveatGroup", "arm_caveats", "at_chance",
           "not_converged", "cannot_fit", "caveat_groups", "comparison_tags", "headline_blocked", "NO_HEADLINE"]
