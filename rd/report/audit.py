"""The fairness audit: for each comparison, is everything except the thing compared the same?

Public API (unit-tested in ``tests/test_audit.py``):

* ``arm_facts(arm, runs, config) -> ArmFacts``: what one arm's runs recorded (train.json,
  summary row, test-set hash), each as a display string; values that differ between the
  arm's runs are all shown, values no run recorded are "unknown".
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

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from rd.report.formatting import METRIC_LABEL, finite, fmt_num, fmt_p, fmt_pt, joined
from rd.report.inputs import Run

ALPHA = 0.05
EQUAL, DIFFERENT, BY_DESIGN, UNKNOWN = "equal", "different", "by design", "unknown"
RANDOM_INIT_MEANING = (
    "Reverse Distillation assumes a pretrained teacher whose features already tell normal from anomalous; "
    "with random weights the numbers measure the architecture with random features, not the pretrained "
    "backbone. Do not read such a comparison as evidence about pretrained ResNet vs ConvNeXt teachers; rerun "
    "with weights: imagenet (or a local checkpoint) for that.")
RANDOM_WEIGHTS = {"none", "random", "scratch", "", "null"}
RANDOM_INIT, PRETRAINING_DIFFERS, NOT_SAME_PROTOCOL = \
    "RANDOM-INIT TEACHER", "TEACHER PRETRAINING DIFFERS", "NOT THE SAME PROTOCOL"
DEFAULT_LOSS = "RD cosine loss: sum over stages of 1 − cos(teacher, student)"


# --------------------------------------------------------------------------- facts of one arm
@dataclass(frozen=True)
class ArmFacts:
    """What the runs of one arm recorded, as display strings (distinct values comma-joined).

    ``test_split``: sha256 over the per-category test-list hashes, "mixed" when seeds of one
    category saw different test lists, None when a run has no scores.csv.
    """

    arm: str
    backbone: str
    setting: str
    categories: list[str]
    test_split: str | None
    image_size: str
    augmentation: str
    preprocessing: str
    loss: str
    seeds: str
    epochs: str
    steps: str
    batch_size: str
    decoder: str
    weights: str
    random_teacher: bool
    setting_params: str


def is_random_weights(weights: Any) -> bool:
    """True for the weights values that mean "randomly initialised teacher"."""
    return weights is None or str(weights).strip().lower() in RANDOM_WEIGHTS


def decoder_family(backbone: str, train: dict) -> str:
    """The decoder train.json names, else the one the backbone name implies (said so)."""
    if train.get("decoder"):
        return str(train["decoder"])
    name = backbone.lower()
    for family in ("convnext", "resnet", "efficientnet", "mobilenet", "vit"):
        if family in name:
            return f"de_{'resnet' if family == 'resnet' else family} (from the backbone name)"
    return "unknown"


def describe_setting(name: str, params: dict) -> str:
    inner = ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in params.items())
    return f"{name}: {inner}" if inner else name


def _test_split(runs: Sequence[Run], categories: list[str]) -> str | None:
    per_category = {}
    for category in categories:
        hashes = {r.test_hash for r in runs if r.row["category"] == category}
        if len(hashes) == 1 and None not in hashes:
            per_category[category] = next(iter(hashes))
        else:
            per_category[category] = "mixed" if len(hashes) > 1 else None
    if any(v is None for v in per_category.values()):
        return None
    if any(v == "mixed" for v in per_category.values()):
        return "mixed"
    return hashlib.sha256(json.dumps(sorted(per_category.items())).encode()).hexdigest()


def arm_facts(arm: str, runs: Sequence[Run], config: dict) -> ArmFacts:
    """Facts of ``arm`` from its runs (other arms' runs in ``runs`` are ignored).

    A fact no train.json recorded falls back to the config's setting (optimiser), to the
    pipeline's fixed choice (loss, preprocessing) or to "unknown".
    """
    rows = [r for r in runs if r.row["arm"] == arm]
    backbone, _, setting = arm.partition("/")
    trains = [r.train for r in rows if r.train]
    setting_params = [t.get("setting_params") or {} for t in trains] or \
        [(config.get("settings") or {}).get(setting, {})]
    categories = sorted({r.row["category"] for r in rows})

    def size_of(run: Run) -> str:
        return str(int(run.row["image_size"])) if finite(run.row.get("image_size")) else "?"

    return ArmFacts(
        arm=arm, backbone=backbone, setting=setting, categories=categories,
        test_split=_test_split(rows, categories),
        image_size=joined(int(r.row["image_size"]) for r in rows if finite(r.row.get("image_size"))),
        augmentation=joined(t.get("augmentation", s.get("augmentation", "none")) for t, s in zip(trains, setting_params))
        if trains else "none",
        preprocessing=joined(t.get("preprocessing") or s.get("preprocessing", "resize to {size} px").replace(
            "{size}", size_of(r)) for t, s in zip(trains or [{}], setting_params) for r in rows[:1]),
        loss=joined(t.get("loss", s.get("loss", DEFAULT_LOSS)) for t, s in zip(trains or [{}], setting_params)),
        seeds=", ".join(str(s) for s in sorted({int(r.row["seed"]) for r in rows})),
        epochs=joined(int(r.row["epochs"]) for r in rows if finite(r.row.get("epochs"))),
        steps=joined(t.get("steps", "?") for t in trains),
        batch_size=joined(t.get("batch_size", config.get("batch_size", "?")) for t in trains),
        decoder=joined(decoder_family(backbone, t) for t in (trains or [{}])),
        weights=joined(r.row.get("weights", "unknown") for r in rows),
        random_teacher=any(is_random_weights(r.row.get("weights")) for r in rows),
        setting_params=joined(describe_setting(setting, s) for s in setting_params),
    )


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
    add("optimiser and schedule (setting)", facts_a.setting_params, facts_b.setting_params, by_design=True,
        note=("the setting differs: the comparison measures backbone and recipe together"
              if facts_a.setting_params != facts_b.setting_params and backbones_differ else ""))
    add("teacher pretraining", facts_a.weights, facts_b.weights)

    caveats = []
    random_arms = [f for f in (facts_a, facts_b) if f.random_teacher]
    if random_arms:
        who = " and ".join(f"{f.arm} (weights: {f.weights})" for f in random_arms)
        caveats.append(Caveat(RANDOM_INIT, [f.arm for f in random_arms],
                              f"{who} {'use' if len(random_arms) > 1 else 'uses'} a randomly initialised, frozen "
                              f"teacher. {RANDOM_INIT_MEANING}"))
    if facts_a.weights != facts_b.weights:
        caveats.append(Caveat(PRETRAINING_DIFFERS, [arm_a, arm_b],
                              f"{arm_a} uses weights '{facts_a.weights}', {arm_b} uses '{facts_b.weights}'. Any "
                              "difference mixes the architecture with the pretraining, so it cannot be attributed "
                              "to the backbone."))
    unfair = [r.aspect for r in rows if r.status == DIFFERENT and r.aspect != "teacher pretraining"]
    if unfair:
        caveats.append(Caveat(NOT_SAME_PROTOCOL, [arm_a, arm_b],
                              f"these differ between the arms although the protocol keeps them equal: "
                              f"{', '.join(unfair)}. The difference in results may come from them."))
    return ComparisonAudit(name=f"{arm_b} vs {arm_a}", arm_a=arm_a, arm_b=arm_b, rows=rows, caveats=caveats)


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
        out.insert(0, HeadlineCaveat(
            ", ".join(affected) or "no comparison", RANDOM_INIT,
            f"{', '.join(random_arms)} {'use' if len(random_arms) > 1 else 'uses'} a randomly initialised, frozen "
            f"teacher (weights: {joined(facts[a].weights for a in random_arms)}). {RANDOM_INIT_MEANING}"))
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
    return Verdict(text=f"{row['comparison']}: {', '.join(parts)} — {conclusion}", kind=kind,
                   details="; ".join(details), flags=audit.kinds if audit else [])
