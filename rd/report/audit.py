"""The fairness audit: for each comparison, is everything except the thing compared the same?

Public API (unit-tested in ``tests/test_audit.py``):

* ``arm_facts(arm, runs, config) -> ArmFacts`` (from ``rd.report.facts``): what one arm's
  runs recorded (train.json, summary row, test-set hash), each as a display string; values
  that differ between the arm's runs are all shown, values no run recorded are "unknown".
* ``fairness_audit(comparisons, facts, manifests) -> list[ComparisonAudit]``: one audit per
  comparison, a row per aspect with status ``equal`` / ``different`` / ``by design`` (what the
  comparison varies on purpose) / ``unknown``, and caveats for what makes a difference
  unattributable.
* ``headline_caveats(audits, facts)``: the caveats repeated at the top of the report.
* ``verdict(stats_row, audit)``: the one-sentence conclusion of a statistics row.

Why this matters: a comparison of teacher backbones is only evidence about the teacher if
the data, budget, recipe and pretraining match; the audit says which of them do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from rd.report.facts import ArmFacts, arm_facts, fmt_params, is_random_weights
from rd.report.formatting import METRIC_LABEL, finite, fmt_num, fmt_p, fmt_pt, joined

__all__ = ["ALPHA", "ArmFacts", "AuditRow", "Caveat", "ComparisonAudit", "HeadlineCaveat", "Verdict",
           "arm_facts", "architecture_note", "audit_comparison", "fairness_audit", "headline_caveats",
           "is_random_weights", "verdict", "RANDOM_INIT_MEANING", "STUDENT_SIZE_RATIO"]

ALPHA = 0.05
EQUAL, DIFFERENT, BY_DESIGN, UNKNOWN = "equal", "different", "by design", "unknown"
RANDOM_INIT_MEANING = (
    "A random teacher is an architecture prior only, no pretraining. Reverse Distillation assumes a pretrained "
    "teacher whose features already tell normal from anomalous; with random weights the numbers measure the "
    "architecture with random features, not the pretrained backbone. Do not read such a comparison as evidence "
    "about pretrained ResNet vs ConvNeXt teachers; rerun with weights: imagenet (or a local checkpoint) for that.")
RANDOM_INIT, PRETRAINING_DIFFERS, NOT_SAME_PROTOCOL, STUDENT_DIFFERS = \
    "RANDOM-INIT TEACHER", "TEACHER PRETRAINING DIFFERS", "NOT THE SAME PROTOCOL", "STUDENT DIFFERS"
STUDENT_SIZE_RATIO = 1.25  # students within this factor of each other count as the same size
# rows with their own caveat (or none: a different student init follows from a different student);
# NOT THE SAME PROTOCOL lists the other "different" rows
OWN_CAVEAT_ROWS = ("teacher pretraining", "teacher recipe", "student family", "student parameters",
                   "student output", "student init", "projection")
ONLY_TEACHER = "only the teacher differs"
GUIDE_NOTE = ("projection: guide ends in a ReLU (frozen 1x1 conv + BatchNorm + ReLU per stage): the features the "
              "student fits are non-negative, not the teacher's own signed features")
# what each caveat means, said once at the top of the report (verdict lines carry only the tag)
MEANINGS = {
    PRETRAINING_DIFFERS: "The teachers were pretrained on different data or with different recipes: any difference "
                         "mixes the architecture with the pretraining, so it cannot be attributed to the backbone.",
    STUDENT_DIFFERS: "The students differ (structure, output or size): the difference mixes teacher and student, "
                     "not the teacher alone.",
    NOT_SAME_PROTOCOL: "Aspects the protocol keeps equal differ between the arms; the difference in results may "
                       "come from them.",
}


# --------------------------------------------------------------------------- the audit
@dataclass(frozen=True)
class AuditRow:
    """One aspect of a comparison: the two arms' values, the status and a note why."""

    aspect: str
    value_a: str
    value_b: str
    status: str
    note: str = ""


@dataclass(frozen=True)
class Caveat:
    """A reason to read a comparison carefully; ``kind`` is the upper-case tag shown."""

    kind: str
    arms: list[str]
    text: str
    detail: str = ""  # what triggered it here, without the general meaning (said once, in MEANINGS)


@dataclass
class ComparisonAudit:
    """The audit of ``arm_b`` vs ``arm_a`` (named like the statistics rows)."""

    name: str
    arm_a: str
    arm_b: str
    rows: list[AuditRow] = field(default_factory=list)
    caveats: list[Caveat] = field(default_factory=list)
    architecture_note: str = ""  # what the verdicts add about teacher vs student (see architecture_note())

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(c.kind for c in self.caveats))

    def row(self, aspect: str) -> AuditRow:
        """The row whose aspect starts with ``aspect`` (KeyError when absent)."""
        for r in self.rows:
            if r.aspect.startswith(aspect):
                return r
        raise KeyError(aspect)


@dataclass(frozen=True)
class HeadlineCaveat:
    """A caveat as listed at the top of the report, with the comparisons it affects."""

    comparison: str
    kind: str
    text: str


def _status(value_a: Any, value_b: Any, by_design: bool = False, unknown: bool = False) -> str:
    if unknown:
        return UNKNOWN
    if value_a == value_b:
        return EQUAL
    return BY_DESIGN if by_design else DIFFERENT


def _split_text(split: str | None) -> str:
    if split is None:
        return "unknown"
    return "differs between seeds" if split == "mixed" else split[:12]


def _manifest_note(categories: list[str], manifests: Mapping[str, dict]) -> str:
    hashes = [manifests.get(c, {}).get("file_list_sha256") for c in categories]
    if not any(hashes):
        return "no data manifest given: train split not hashed"
    return ("data manifests (file_list_sha256, shared by both arms): "
            + ", ".join(f"{c} {str(h)[:10]}" for c, h in zip(categories, hashes)))


def _is_unknown(value: str) -> bool:
    return "unknown" in value.split(", ")


def _pretraining_row(facts_a: ArmFacts, facts_b: ArmFacts) -> AuditRow:
    """Compares the pretraining *data* (in1k vs in12k differ even for the same tag family)."""
    value_a = f"{facts_a.pretraining} ({facts_a.teacher_tag})"
    value_b = f"{facts_b.pretraining} ({facts_b.teacher_tag})"
    recorded = {facts_a.weights_sha256, facts_b.weights_sha256} - {"unknown", "none"}
    hashes = f"weights sha256 {facts_a.weights_sha256[:12]} vs {facts_b.weights_sha256[:12]}" if recorded else ""
    pretraining_a, pretraining_b = facts_a.pretraining, facts_b.pretraining
    if _is_unknown(pretraining_a) or _is_unknown(pretraining_b):
        if {pretraining_a, pretraining_b} == {"unknown", "none"}:  # a random teacher against a pretrained one
            return AuditRow("teacher pretraining", value_a, value_b, DIFFERENT,
                            "one teacher is random (no pretraining), the other pretrained (its data is not "
                            "recorded in this older train.json)")
        return AuditRow("teacher pretraining", value_a, value_b, UNKNOWN,
                        f"train.json does not record the teacher's pretraining (older run; weights settings "
                        f"'{facts_a.weights}' vs '{facts_b.weights}'): rerun train to record it")
    if pretraining_a == pretraining_b:
        return AuditRow("teacher pretraining", value_a, value_b, EQUAL, hashes)
    note = f"the arms saw different pretraining data ({pretraining_a} vs {pretraining_b})"
    return AuditRow("teacher pretraining", value_a, value_b, DIFFERENT, "; ".join(x for x in (note, hashes) if x))


def _known_row(aspect: str, value_a: str, value_b: str, note_different: str = "", note_unknown: str = "") -> AuditRow:
    """equal / different, or unknown when either arm did not record the value."""
    if _is_unknown(value_a) or _is_unknown(value_b):
        return AuditRow(aspect, value_a, value_b, UNKNOWN, note_unknown or "not recorded by these runs")
    if value_a == value_b:
        return AuditRow(aspect, value_a, value_b, EQUAL)
    return AuditRow(aspect, value_a, value_b, DIFFERENT, note_different)


def _student_rows(facts_a: ArmFacts, facts_b: ArmFacts) -> list[AuditRow]:
    """Student family, size, output activation and initial weights: RD's student mirrors its
    teacher, so a teacher comparison may also compare two different students; sizes within
    ``STUDENT_SIZE_RATIO`` count as the same size (the "only the teacher differs" claim needs
    them exactly equal)."""
    family_a, family_b = facts_a.student_family, facts_b.student_family
    family = _known_row("student family", family_a, family_b,
                        f"{family_a} vs {family_b} student: the comparison also compares the students",
                        "train.json does not record the student family")
    sizes_a, sizes_b = facts_a.student_params, facts_b.student_params
    size_a, size_b = fmt_params(sizes_a), fmt_params(sizes_b)
    if not sizes_a or not sizes_b:
        size = AuditRow("student parameters", size_a, size_b, UNKNOWN, "no trainable-student size recorded")
    else:
        ratio = max(sizes_a + sizes_b) / min(sizes_a + sizes_b)
        exact = f"{', '.join(f'{v:,}' for v in sizes_a)} vs {', '.join(f'{v:,}' for v in sizes_b)}"
        if ratio <= STUDENT_SIZE_RATIO:
            size = AuditRow("student parameters", size_a, size_b, EQUAL,
                            "" if ratio == 1 else f"within {STUDENT_SIZE_RATIO}x of each other (ratio {ratio:.2f}; "
                                                  f"{exact})")
        else:
            size = AuditRow("student parameters", size_a, size_b, DIFFERENT,
                            f"{size_a} vs {size_b}: ratio {ratio:.2f}, more than {STUDENT_SIZE_RATIO}x")
    output = _known_row("student output", facts_a.student_output, facts_b.student_output,
                        "a ReLU output stage is non-negative, a linear one can take any sign")
    init_a, init_b = facts_a.student_init_sha256, facts_b.student_init_sha256
    init = _known_row("student init (sha256 of the initial student)", init_a[:12] if not _is_unknown(init_a) else
                      init_a, init_b[:12] if not _is_unknown(init_b) else init_b,
                      "the students start from different weights")
    return [family, size, output, init]


def _projection_row(facts_a: ArmFacts, facts_b: ArmFacts) -> AuditRow:
    note = GUIDE_NOTE if "guide" in (facts_a.projection, facts_b.projection) else ""
    row = _known_row("projection", facts_a.projection, facts_b.projection, note)
    return AuditRow(row.aspect, row.value_a, row.value_b, row.status, note or row.note)


def _recipe_row(facts_a: ArmFacts, facts_b: ArmFacts) -> AuditRow:
    """The teacher's pretraining recipe (e.g. torchvision's 90-epoch tv_in1k against ConvNeXt's
    300-epoch fb_in1k): the same data with different recipes is "different", not "equal"."""
    def text(f: ArmFacts) -> str:
        return f.teacher_recipe if _is_unknown(f.teacher_top1) else f"{f.teacher_recipe} (top-1 {f.teacher_top1})"

    return _known_row("teacher recipe", facts_a.teacher_recipe, facts_b.teacher_recipe,
                      f"{text(facts_a)} vs {text(facts_b)}")


def _students_text(facts_a: ArmFacts, facts_b: ArmFacts) -> str:
    """ "resnet 15.4 M vs convnext 8.8 M" (a family that was not recorded is left out)."""
    def one(facts: ArmFacts) -> str:
        size = fmt_params(facts.student_params)
        text = size if _is_unknown(facts.student_family) else f"{facts.student_family} {size}"
        return text if _is_unknown(facts.student_output) else f"{text} {facts.student_output}"

    return f"{one(facts_a)} vs {one(facts_b)}"


def architecture_note(facts_a: ArmFacts, facts_b: ArmFacts, student_rows: Sequence[AuditRow]) -> str:
    """What the verdict of a comparison says about the architectures it compares: students
    that differ (family, output, or size beyond the ratio) make the result about teacher and
    student together. "Only the teacher differs" is claimed only when the students' family,
    output, exact trainable parameter count and initial weights (sha256) are all recorded and
    equal; anything unknown claims nothing."""
    by_aspect = {r.aspect.split(" (")[0]: r for r in student_rows}
    if any(r.status == DIFFERENT for a, r in by_aspect.items() if a != "student init"):
        return (f"the students differ ({_students_text(facts_a, facts_b)}): the difference mixes teacher and "
                "student, not the teacher alone")
    same = (all(r.status == EQUAL for r in by_aspect.values())
            and facts_a.student_params == facts_b.student_params and len(facts_a.student_params) == 1)
    if same and facts_a.backbone != facts_b.backbone:
        return ONLY_TEACHER
    return ""


def _random_caveat_text(random_arms: Sequence[ArmFacts], verb_subject: str) -> str:
    """The random-teacher caveat, with the initialisation training recorded (once per sentence)."""
    by_init: dict[str, list[str]] = {}
    for f in random_arms:
        if f.random_teacher_init:
            by_init.setdefault(f.random_teacher_init, []).append(f.arm)
    if len(by_init) == 1 and sum(map(len, by_init.values())) == len(random_arms):
        init_text = f" Initialisation recorded by training: {next(iter(by_init))}."
    else:
        init_text = "".join(f" Initialisation recorded by training for {', '.join(arms)}: {init}."
                            for init, arms in by_init.items())
    return f"{verb_subject}. {RANDOM_INIT_MEANING}{init_text}"


def _optimiser_text(facts: ArmFacts) -> str:
    rule = "weight decay rule not recorded" if _is_unknown(facts.weight_decay_rule) else facts.weight_decay_rule
    return f"{facts.setting_params}; {rule}"


def audit_comparison(arm_a: str, arm_b: str, facts_a: ArmFacts, facts_b: ArmFacts,
                     manifests: Mapping[str, dict]) -> ComparisonAudit:
    """The audit rows and caveats of one comparison (``arm_b`` vs ``arm_a``)."""
    rows: list[AuditRow] = []

    def add(aspect: str, value_a: Any, value_b: Any, by_design: bool = False, unknown: bool = False,
            note: str = "") -> None:
        rows.append(AuditRow(aspect, value_a, value_b, _status(value_a, value_b, by_design, unknown), note))

    all_categories = sorted(set(facts_a.categories) | set(facts_b.categories))
    split_a, split_b = _split_text(facts_a.test_split), _split_text(facts_b.test_split)
    add("dataset: categories", ", ".join(facts_a.categories), ", ".join(facts_b.categories),
        note="" if facts_a.categories == facts_b.categories else
        "the arms cover different categories: averages are not comparable")
    add("test split (hash of the test image list in scores.csv)", split_a, split_b,
        unknown=(facts_a.test_split is None or facts_b.test_split is None) and split_a == split_b,
        note=_manifest_note(all_categories, manifests))
    add("preprocessing", facts_a.preprocessing, facts_b.preprocessing)
    add("augmentation", facts_a.augmentation, facts_b.augmentation)
    add("seeds", facts_a.seeds, facts_b.seeds)
    add("loss", facts_a.loss, facts_b.loss)
    add("budget: epochs", facts_a.epochs, facts_b.epochs)
    add("budget: optimisation steps", facts_a.steps, facts_b.steps)
    add("batch size", facts_a.batch_size, facts_b.batch_size)
    add("image size", facts_a.image_size, facts_b.image_size)
    backbones_differ = facts_a.backbone != facts_b.backbone
    add("teacher backbone", facts_a.backbone, facts_b.backbone, by_design=True,
        note="what the comparison is about" if backbones_differ else "")
    add("decoder family", facts_a.decoder, facts_b.decoder, by_design=backbones_differ,
        note="the decoder mirrors its teacher" if facts_a.decoder != facts_b.decoder else "")
    student_rows = _student_rows(facts_a, facts_b)
    rows.extend(student_rows)
    add("optimiser and schedule (setting)", _optimiser_text(facts_a), _optimiser_text(facts_b), by_design=True,
        note=("the setting differs: the comparison measures backbone and recipe together"
              if facts_a.setting_params != facts_b.setting_params and backbones_differ else ""))
    pretraining = _pretraining_row(facts_a, facts_b)
    recipe = _recipe_row(facts_a, facts_b)
    rows += [pretraining, recipe, _projection_row(facts_a, facts_b)]

    caveats = []
    random_arms = [f for f in (facts_a, facts_b) if f.random_teacher]
    if random_arms:
        who = " and ".join(f"{f.arm} (weights: {f.weights})" for f in random_arms)
        caveats.append(Caveat(RANDOM_INIT, [f.arm for f in random_arms], _random_caveat_text(
            random_arms, f"{who} {'use' if len(random_arms) > 1 else 'uses'} a randomly initialised, frozen teacher")))
    if pretraining.status == DIFFERENT:
        caveats.append(Caveat(PRETRAINING_DIFFERS, [arm_a, arm_b],
                              f"{arm_a}'s teacher is {pretraining.value_a}, {arm_b}'s is {pretraining.value_b}: "
                              f"{pretraining.note}. Any difference mixes the architecture with the pretraining, so "
                              "it cannot be attributed to the backbone.",
                              detail=f"{pretraining.value_a} vs {pretraining.value_b}"))
    elif recipe.status == DIFFERENT:
        caveats.append(Caveat(PRETRAINING_DIFFERS, [arm_a, arm_b],
                              f"the teachers' pretraining recipes differ ({recipe.note}). Any difference mixes the "
                              "architecture with the pretraining, so it cannot be attributed to the backbone.",
                              detail=f"recipes {recipe.note}"))
    arch_note = architecture_note(facts_a, facts_b, student_rows)
    if arch_note.startswith("the students differ"):
        caveats.append(Caveat(STUDENT_DIFFERS, [arm_a, arm_b], arch_note[0].upper() + arch_note[1:] + ".",
                              detail=_students_text(facts_a, facts_b)))
    unfair = [r.aspect for r in rows if r.status == DIFFERENT and not r.aspect.startswith(OWN_CAVEAT_ROWS)]
    if unfair:
        caveats.append(Caveat(NOT_SAME_PROTOCOL, [arm_a, arm_b],
                              f"these differ between the arms although the protocol keeps them equal: "
                              f"{', '.join(unfair)}. The difference in results may come from them.",
                              detail=", ".join(unfair)))
    return ComparisonAudit(name=f"{arm_b} vs {arm_a}", arm_a=arm_a, arm_b=arm_b, rows=rows, caveats=caveats,
                           architecture_note=arch_note)


def fairness_audit(comparisons: Iterable[tuple[str, str]], facts: Mapping[str, ArmFacts],
                   manifests: Mapping[str, dict]) -> list[ComparisonAudit]:
    """One ``ComparisonAudit`` per comparison ``(arm_a, arm_b)``, in the given order."""
    return [audit_comparison(a, b, facts[a], facts[b], manifests) for a, b in comparisons]


def headline_caveats(audits: Sequence[ComparisonAudit], facts: Mapping[str, ArmFacts]) -> list[HeadlineCaveat]:
    """The caveats for the top of the report: random-init teachers once (over all arms, since
    they affect every reading of those arms), then each comparison's other caveats."""
    out = [HeadlineCaveat(a.name, c.kind, c.text) for a in audits for c in a.caveats if c.kind != RANDOM_INIT]
    random_arms = [a for a in facts if facts[a].random_teacher]
    if random_arms:
        affected = [a.name for a in audits if RANDOM_INIT in a.kinds]
        out.insert(0, HeadlineCaveat(", ".join(affected) or "no comparison", RANDOM_INIT, _random_caveat_text(
            [facts[a] for a in random_arms],
            f"{', '.join(random_arms)} {'use' if len(random_arms) > 1 else 'uses'} a randomly initialised, frozen "
            f"teacher (weights: {joined(facts[a].weights for a in random_arms)})")))
    return out


# --------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Verdict:
    """The conclusion of one statistics row: ``text`` (one sentence), ``kind`` (``sig``,
    ``ns`` or ``na``: no test possible), ``details`` (effect size, power warning) and the
    caveat kinds of the comparison."""

    text: str
    kind: str
    details: str
    flags: list[str]
    category: str = ""


def _num(x: Any) -> float:
    return float(x) if finite(x) else math.nan


def verdict(stats_row: Mapping[str, Any], audit: ComparisonAudit | None = None,
            tags: Sequence[str] | None = None) -> Verdict:
    """One sentence from a stats.csv row, using its ``verdict`` column as is: difference, CI (or
    the range of the differences when there are too few units for a test), Holm p, n, the
    verdict and, for the primary metric, the smallest detectable difference (``mde_80``) and the
    units the observed difference would need (``n_for_observed``). ``tags``: the caveat kinds
    (default: the audit's); their meaning is said once at the top of the report."""
    row = stats_row
    label = METRIC_LABEL.get(row["metric"], row["metric"])
    n = int(row["n"]) if finite(row["n"]) else 0
    unit = row.get("unit") or ("categories" if row["reading"] == "across_categories" else "seeds")
    unit_text = {"categories": "category", "seeds": "seed", "test images": "test image"}.get(unit, unit) \
        if n == 1 else unit
    diff, lo, hi = _num(row["mean_diff"]), _num(row.get("ci_low")), _num(row.get("ci_high"))
    shown = [v for v in (diff, lo, hi, _num(row.get("mde_80"))) if finite(v)]
    digits = 1 if shown and max(abs(v) for v in shown) * 100 >= 1 else 2
    parts = [f"{fmt_pt(diff, digits, signed=True)} pt {label}"] if n else [f"no paired runs for {label}"]
    if finite(lo) and finite(hi):
        parts.append(f"95% CI [{fmt_pt(lo, digits)}, {fmt_pt(hi, digits)}]")
    elif n > 1 and finite(row.get("diff_min")):
        parts.append(f"range [{fmt_pt(row['diff_min'], digits, signed=True)}, "
                     f"{fmt_pt(row['diff_max'], digits, signed=True)}]")
    if finite(row.get("p_holm")):
        p_text = fmt_p(row["p_holm"])
        parts.append(f"p_holm {p_text}" if p_text.startswith("<") else f"p_holm = {p_text}")
    parts.append(f"n = {n} {unit_text}")
    word = str(row.get("verdict") or "")
    if not word:  # an exploratory metric, or a stats.csv from before the verdict column
        conclusion, kind = "exploratory (no verdict: not the primary metric)", "na"
    elif word == "significant":
        conclusion, kind = f"significant (Holm, α = {ALPHA})", "sig"
    elif word == "not significant":
        conclusion, kind = "not significant", "ns"
    elif word == "too few units":
        conclusion, kind = str(row.get("note") or "too few units for a test"), "na"
    else:
        conclusion, kind = word, "na"
    power = []
    if finite(row.get("mde_80")):
        power.append(f"with {n} {unit} and this spread, differences above "
                     f"{fmt_pt(row['mde_80'], digits)} pt are detectable")
    n_obs = row.get("n_for_observed")
    if finite(n_obs):
        power.append(f"{int(n_obs)} {unit} would detect {fmt_pt(diff, digits, signed=True)} pt")
    elif n_obs is not None and isinstance(n_obs, float) and math.isinf(n_obs):
        power.append(f"no feasible number of {unit} detects {fmt_pt(diff, digits, signed=True)} pt")
    text = f"{row['comparison']}: {', '.join(parts)} — {conclusion}"
    if power:
        text += f" ({'; '.join(power)})"
    details = []
    if kind == "na" and row.get("note") and word not in ("too few units", ""):
        details.append(str(row["note"]))
    if kind == "ns" and n < 10:
        details.append(f"with n = {n} the test has little power: 'not significant' does not mean 'no difference'")
    if finite(row.get("d_z")):
        details.append(f"d_z = {fmt_num(row['d_z'])}")
    flags = list(tags) if tags is not None else (audit.kinds if audit else [])
    if audit is not None and audit.architecture_note == ONLY_TEACHER:
        flags = [ONLY_TEACHER] + flags
    return Verdict(text=text, kind=kind, details="; ".join(details), flags=flags)


def audit_matrix(audits: Sequence[ComparisonAudit]) -> dict:
    """The fairness audit as one matrix: aspects × comparisons, only the aspects where some
    comparison is not ``equal`` (cells: status, both values, the note); the aspects equal in
    every comparison are listed once (``equal``)."""
    aspects = list(dict.fromkeys(r.aspect for a in audits for r in a.rows))
    rows, equal = [], []
    for aspect in aspects:
        cells = []
        for a in audits:
            r = next((x for x in a.rows if x.aspect == aspect), None)
            cells.append({"status": r.status if r else UNKNOWN,
                          "text": "" if r is None or r.status == EQUAL else
                          (r.value_a if r.value_a == r.value_b else f"{r.value_a} → {r.value_b}"),
                          "note": r.note if r else ""})
        if all(c["status"] == EQUAL for c in cells):
            equal.append(aspect)
        else:
            rows.append({"aspect": aspect, "cells": cells})
    return {"comparisons": [a.name for a in audits], "rows": rows, "equal": equal}
