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
# rows with their own caveat; NOT THE SAME PROTOCOL lists the other "different" rows
OWN_CAVEAT_ROWS = ("teacher pretraining", "student family", "student parameters")


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


def _student_rows(facts_a: ArmFacts, facts_b: ArmFacts) -> list[AuditRow]:
    """Student family and size: RD's student mirrors its teacher, so a teacher comparison may
    also compare two different students; within ``STUDENT_SIZE_RATIO`` counts as equal."""
    family_a, family_b = facts_a.student_family, facts_b.student_family
    if _is_unknown(family_a) or _is_unknown(family_b):
        family = AuditRow("student family", family_a, family_b, UNKNOWN,
                          "train.json does not record the student family")
    elif family_a == family_b:
        family = AuditRow("student family", family_a, family_b, EQUAL)
    else:
        family = AuditRow("student family", family_a, family_b, DIFFERENT,
                          f"{family_a} vs {family_b} student: the comparison also compares the students")
    sizes_a, sizes_b = facts_a.student_params, facts_b.student_params
    size_a, size_b = fmt_params(sizes_a), fmt_params(sizes_b)
    if not sizes_a or not sizes_b:
        size = AuditRow("student parameters", size_a, size_b, UNKNOWN, "no trainable-student size recorded")
    else:
        ratio = max(sizes_a + sizes_b) / min(sizes_a + sizes_b)
        if ratio <= STUDENT_SIZE_RATIO:
            size = AuditRow("student parameters", size_a, size_b, EQUAL,
                            "" if ratio == 1 else f"within {STUDENT_SIZE_RATIO}x of each other (ratio {ratio:.2f})")
        else:
            size = AuditRow("student parameters", size_a, size_b, DIFFERENT,
                            f"{size_a} vs {size_b}: ratio {ratio:.2f}, more than {STUDENT_SIZE_RATIO}x")
    return [family, size]


def _students_text(facts_a: ArmFacts, facts_b: ArmFacts) -> str:
    """ "resnet 15.4 M vs convnext 8.8 M" (a family that was not recorded is left out)."""
    def one(facts: ArmFacts) -> str:
        size = fmt_params(facts.student_params)
        return size if _is_unknown(facts.student_family) else f"{facts.student_family} {size}"

    return f"{one(facts_a)} vs {one(facts_b)}"


def architecture_note(facts_a: ArmFacts, facts_b: ArmFacts, student_rows: Sequence[AuditRow]) -> str:
    """What the verdict of a comparison says about the architectures it compares: students
    that differ (family, or size beyond the ratio) make the result about teacher and student
    together; the same student with different teachers isolates the teacher."""
    statuses = {r.status for r in student_rows}
    if DIFFERENT in statuses:
        return (f"the students differ ({_students_text(facts_a, facts_b)}): the difference mixes teacher and "
                "student, not the teacher alone")
    if statuses == {EQUAL} and facts_a.backbone != facts_b.backbone:
        return (f"same student family and size ({_students_text(facts_a, facts_b)}): the teacher is the only "
                "architectural difference")
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
    rows.append(pretraining)

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
                              "it cannot be attributed to the backbone."))
    arch_note = architecture_note(facts_a, facts_b, student_rows)
    if any(r.status == DIFFERENT for r in student_rows):
        caveats.append(Caveat(STUDENT_DIFFERS, [arm_a, arm_b], arch_note[0].upper() + arch_note[1:] + "."))
    unfair = [r.aspect for r in rows if r.status == DIFFERENT and r.aspect not in OWN_CAVEAT_ROWS]
    if unfair:
        caveats.append(Caveat(NOT_SAME_PROTOCOL, [arm_a, arm_b],
                              f"these differ between the arms although the protocol keeps them equal: "
                              f"{', '.join(unfair)}. The difference in results may come from them."))
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


def verdict(stats_row: Mapping[str, Any], audit: ComparisonAudit | None = None) -> Verdict:
    """One sentence: difference, CI, Holm p, n, and whether it is significant at ``ALPHA``."""
    row = stats_row
    label = METRIC_LABEL.get(row["metric"], row["metric"])
    n = int(row["n"]) if finite(row["n"]) else 0
    unit = row.get("unit") or ("categories" if row["reading"] == "across_categories" else "seeds")
    unit_text = {"categories": "category", "seeds": "seed"}.get(unit, unit) if n == 1 else unit
    diff = float(row["mean_diff"]) if finite(row["mean_diff"]) else math.nan
    lo, hi = row["ci_low"], row["ci_high"]
    shown = [v for v in (diff, lo, hi) if finite(v)]
    largest = max(abs(v) for v in shown) * 100 if shown else 0
    digits = 1 if largest >= 1 else 2
    parts = [f"{fmt_pt(diff, digits, signed=True)} pt {label}"] if n else [f"no paired runs for {label}"]
    if finite(lo) and finite(hi):
        parts.append(f"95% CI [{fmt_pt(lo, digits, signed=False)}, {fmt_pt(hi, digits, signed=False)}]")
    if finite(row["p_holm"]):
        p_text = fmt_p(row["p_holm"])
        parts.append(f"p_holm {p_text}" if p_text.startswith("<") else f"p_holm = {p_text}")
    parts.append(f"n = {n} {unit_text}")
    if finite(row["p_holm"]):
        if float(row["p_holm"]) < ALPHA:
            conclusion, kind = f"significant (Holm, α = {ALPHA})", "sig"
        else:
            conclusion, kind = "not significant", "ns"
    else:
        conclusion, kind = "no test possible", "na"
    details = []
    if kind == "na" and row.get("note"):
        details.append(str(row["note"]))
    if kind == "ns" and n < 5:
        details.append(f"with n = {n} the test has little power: 'not significant' does not mean 'no difference'")
    if finite(row.get("d_z")):
        details.append(f"d_z = {fmt_num(row['d_z'])}")
    if finite(row.get("boot_ci_low")):
        details.append(f"bootstrap 95% CI [{fmt_pt(row['boot_ci_low'], digits)}, "
                       f"{fmt_pt(row['boot_ci_high'], digits)}] pt")
    text = f"{row['comparison']}: {', '.join(parts)} — {conclusion}"
    if audit is not None and audit.architecture_note:
        text += f"; {audit.architecture_note}"
    return Verdict(text=text, kind=kind,
                   details="; ".join(details), flags=audit.kinds if audit else [])
