"""rd.report.audit: the fairness audit's rows, caveats and verdict sentences, from in-memory runs.

No files and no report build: each test makes a few ``Run`` objects the way ``load_run``
would (a summary row plus the parsed train.json) and checks one audit row or text.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rd.report.audit import (DIFFERENT, EQUAL, PRETRAINING_DIFFERS, RANDOM_INIT, STUDENT_DIFFERS, UNKNOWN,
                             arm_facts, fairness_audit, headline_caveats, verdict)
from rd.report.inputs import Run
from rd.report.paper_check import reproduction_check

DECAY = ("weight decay 0.05 on weights with ndim >= 2; none on biases and 1-D parameters (norm weights, "
         "layer-scale gammas) (timm param_groups_weight_decay)")
INIT = "every residual branch active (ResNet zero_init_last=False, ConvNeXt layer scale 1)"
TEACHERS = {
    "in1k": {"tag": "convnext_tiny.fb_in1k", "pretraining": "in1k", "weights_sha256": "ab" * 32},
    "in12k": {"tag": "convnext_tiny.in12k_ft_in1k", "pretraining": "in12k", "weights_sha256": "cd" * 32},
    "tv_in1k": {"tag": "resnet18.tv_in1k", "pretraining": "in1k", "weights_sha256": "ef" * 32},
    "random": {"tag": "random", "pretraining": "none", "weights_sha256": None},
}


def run(arm: str, *, category: str = "brick", seed: int = 0, weights: str = "imagenet", teacher: str | None = "in1k",
        family: str | None = "convnext", student: int | None = 15_400_000, decay: str | None = "no weight decay",
        random_init: str | None = None, epochs: int = 5, legacy: bool = False) -> Run:
    """A run as ``load_run`` returns it; ``legacy=True``: a train.json from before the new keys."""
    backbone, setting = arm.split("/")
    train = {"category": category, "backbone": backbone, "setting": setting, "seed": seed, "weights": weights,
             "setting_params": {"optimizer": "adam", "lr": 0.005}, "steps": 10, "batch_size": 16}
    if student is not None:
        train["params"] = {"teacher": 1, "bottleneck": student // 2, "decoder": student - student // 2,
                           "student": student}
    if not legacy:
        train.update({"teacher": TEACHERS[teacher] if teacher else None, "student_family": family,
                      "weight_decay_rule": decay, "random_teacher_init": random_init})
    row = {"arm": arm, "category": category, "seed": seed, "weights": weights, "image_size": 64, "epochs": epochs}
    return Run(row=row, run_dir=None, train=train, test_hash="h-" + category)


def audit(runs_a: list[Run], runs_b: list[Run]):
    a, b = runs_a[0].row["arm"], runs_b[0].row["arm"]
    facts = {arm: arm_facts(arm, runs_a + runs_b, {}) for arm in (a, b)}
    (result,) = fairness_audit([(a, b)], facts, {})
    return result, facts


def seeds(arm: str, **kw) -> list[Run]:
    return [run(arm, seed=s, **kw) for s in (0, 1)]


# --------------------------------------------------------------------------- facts
def test_arm_facts_read_the_new_train_json_keys():
    runs = seeds("convnext_tiny/tuned", teacher="in12k", family="convnext", student=26_134_528, decay=DECAY)
    facts = arm_facts("convnext_tiny/tuned", runs, {})
    assert facts.teacher_tag == "convnext_tiny.in12k_ft_in1k" and facts.pretraining == "in12k"
    assert facts.weights_sha256 == "cd" * 32
    assert facts.student_family == "convnext" and facts.student_params == (26_134_528,)
    assert facts.weight_decay_rule == DECAY and facts.random_teacher_init is None
    assert not facts.random_teacher


def test_old_train_json_gives_unknown_not_a_crash():
    old = arm_facts("resnet18/baseline", seeds("resnet18/baseline", legacy=True), {})
    assert (old.teacher_tag, old.pretraining, old.student_family, old.weight_decay_rule) == ("unknown",) * 4
    assert old.student_params == (15_400_000,)  # params.student was recorded before the new keys
    # a random teacher has no pretraining, recorded or not
    assert arm_facts("resnet18/x", seeds("resnet18/x", weights="none", legacy=True), {}).pretraining == "none"
    # no train.json at all, and no student size anywhere
    bare = Run(row={"arm": "a/b", "category": "c", "seed": 0, "weights": "imagenet"}, run_dir=None)
    facts = arm_facts("a/b", [bare], {})
    assert facts.student_params == () and facts.pretraining == "unknown"


def test_old_runs_audit_rows_are_unknown():
    result, _ = audit(seeds("resnet18/baseline", legacy=True), seeds("convnext_tiny/baseline", legacy=True))
    assert result.row("teacher pretraining").status == UNKNOWN
    assert "unknown" in result.row("teacher pretraining").value_a
    assert result.row("student family").status == UNKNOWN
    assert "weight decay rule not recorded" in result.row("optimiser and schedule").value_a
    assert PRETRAINING_DIFFERS not in result.kinds
    assert result.architecture_note == ""  # no claim about students that were not recorded


def test_old_runs_with_different_student_sizes_still_say_so():
    result, _ = audit(seeds("resnet18/baseline", legacy=True, student=15_383_168),
                      seeds("convnext_pico/baseline", legacy=True, student=8_812_416))
    assert result.row("student parameters").status == DIFFERENT
    assert result.architecture_note.startswith("the students differ (15.4 M vs 8.8 M)")


# --------------------------------------------------------------------------- teacher pretraining
def test_pretraining_in1k_vs_in12k_is_different_and_flagged():
    result, _ = audit(seeds("convnext_tiny/a", teacher="in1k"), seeds("convnext_tiny/b", teacher="in12k"))
    row = result.row("teacher pretraining")
    assert row.status == DIFFERENT
    assert "convnext_tiny.fb_in1k" in row.value_a and "convnext_tiny.in12k_ft_in1k" in row.value_b
    assert "different pretraining data" in row.note and "in1k vs in12k" in row.note
    assert PRETRAINING_DIFFERS in result.kinds


def test_pretraining_same_data_different_tags_is_equal():
    result, _ = audit(seeds("resnet18/baseline", teacher="tv_in1k", family="resnet"),
                      seeds("convnext_tiny/baseline", teacher="in1k"))
    assert result.row("teacher pretraining").status == EQUAL
    assert PRETRAINING_DIFFERS not in result.kinds


def test_pretraining_none_vs_none_is_equal():
    kw = dict(weights="none", teacher="random", random_init=INIT)
    result, _ = audit(seeds("resnet18/baseline", family="resnet", **kw), seeds("convnext_pico/baseline", **kw))
    assert result.row("teacher pretraining").status == EQUAL
    assert PRETRAINING_DIFFERS not in result.kinds and RANDOM_INIT in result.kinds


def test_random_vs_unrecorded_pretrained_is_different():
    result, _ = audit(seeds("resnet18/baseline", weights="none", legacy=True),
                      seeds("convnext_tiny/baseline", legacy=True))
    assert result.row("teacher pretraining").status == DIFFERENT
    assert PRETRAINING_DIFFERS in result.kinds


# --------------------------------------------------------------------------- students
def test_student_family_equal_and_different():
    same, _ = audit(seeds("convnext_pico/a"), seeds("convnext_tiny/a"))
    assert same.row("student family").status == EQUAL
    diff, _ = audit(seeds("resnet18/a", family="resnet"), seeds("convnext_tiny/a", family="convnext"))
    row = diff.row("student family")
    assert row.status == DIFFERENT and (row.value_a, row.value_b) == ("resnet", "convnext")
    assert STUDENT_DIFFERS in diff.kinds


@pytest.mark.parametrize("size_b, status", [(12_500_000, EQUAL), (12_500_001, DIFFERENT), (8_000_000, EQUAL),
                                            (7_999_999, DIFFERENT), (10_000_000, EQUAL)])
def test_student_parameters_ratio_boundary(size_b, status):
    result, _ = audit(seeds("convnext_pico/a", student=10_000_000), seeds("convnext_tiny/a", student=size_b))
    assert result.row("student parameters").status == status
    assert (STUDENT_DIFFERS in result.kinds) == (status == DIFFERENT)


def test_student_parameters_shown_in_millions():
    result, _ = audit(seeds("wide_resnet50_2/a", family="resnet", student=83_814_912),
                      seeds("convnext_tiny/a", student=26_134_528))
    row = result.row("student parameters")
    assert (row.value_a, row.value_b) == ("83.8 M", "26.1 M")
    assert "83.8 M vs 26.1 M" in row.note


def test_student_rows_are_not_listed_as_protocol_breaches():
    result, _ = audit(seeds("resnet18/a", family="resnet", epochs=5), seeds("convnext_tiny/a", epochs=9))
    (protocol,) = [c for c in result.caveats if c.kind == "NOT THE SAME PROTOCOL"]
    assert "budget: epochs" in protocol.text and "student" not in protocol.text


def test_optimiser_row_shows_the_weight_decay_rule():
    result, _ = audit(seeds("convnext_tiny/a", decay="no weight decay"), seeds("convnext_tiny/b", decay=DECAY))
    row = result.row("optimiser and schedule")
    assert row.value_a.endswith("; no weight decay") and "timm param_groups_weight_decay" in row.value_b


# --------------------------------------------------------------------------- verdicts
STATS_ROW = {"comparison": "", "metric": "image_auroc", "reading": "across_categories", "n": 15,
             "mean_diff": 0.012, "ci_low": 0.004, "ci_high": 0.02, "p_holm": 0.01, "d_z": 0.9, "note": ""}


def test_verdict_says_when_students_differ():
    result, _ = audit(seeds("resnet18/baseline", family="resnet", student=15_383_168),
                      seeds("convnext_pico/baseline", student=8_812_416))
    v = verdict({**STATS_ROW, "comparison": result.name, "verdict": "significant"}, result)
    assert v.text.startswith("convnext_pico/baseline vs resnet18/baseline: +1.2 pt image AUROC")
    assert result.architecture_note == ("the students differ (resnet 15.4 M vs convnext 8.8 M): the difference "
                                        "mixes teacher and student, not the teacher alone")
    assert v.kind == "sig" and STUDENT_DIFFERS in v.flags


def _recorded(runs: list[Run], **keys) -> list[Run]:
    for r in runs:
        r.train.update(keys)
    return runs


def test_only_the_teacher_differs_needs_every_student_fact_equal_and_recorded():
    # sizes within the ratio but not equal, outputs and inits not recorded: no claim
    result, _ = audit(seeds("convnext_pico/baseline", student=10_000_000),
                      seeds("convnext_tiny/baseline", student=12_000_000))
    assert result.architecture_note == ""
    same = dict(student_output="linear", student_init_sha256="ab" * 32)
    result, _ = audit(_recorded(seeds("resnet18_ctrl/baseline", family="resnet"), **same),
                      _recorded(seeds("convnext_pico_ctrl/baseline", family="resnet"), **same))
    v = verdict({**STATS_ROW, "comparison": result.name, "verdict": "significant"}, result)
    assert result.architecture_note == "only the teacher differs" and v.flags[0] == "only the teacher differs"
    # a relu and a linear student: the students differ
    result, _ = audit(_recorded(seeds("resnet18/baseline", family="resnet"), student_output="relu",
                                student_init_sha256="ab" * 32),
                      _recorded(seeds("convnext_pico_ctrl/baseline", family="resnet"), **same))
    assert result.row("student output").status == DIFFERENT and STUDENT_DIFFERS in result.kinds
    assert "only the teacher" not in result.architecture_note
    # different initial weights: no claim, but no student-differs caveat either
    result, _ = audit(_recorded(seeds("resnet18_ctrl/baseline", family="resnet"), student_output="linear",
                                student_init_sha256="cd" * 32),
                      _recorded(seeds("convnext_pico_ctrl/baseline", family="resnet"), **same))
    assert result.architecture_note == "" and STUDENT_DIFFERS not in result.kinds
    # the same backbone (a recipe comparison): nothing to say about architectures
    same_bb, _ = audit(seeds("convnext_tiny/a"), seeds("convnext_tiny/b"))
    assert same_bb.architecture_note == ""


def test_teacher_recipe_in1k_vs_in1k_is_different():
    a = _recorded(seeds("resnet18/baseline", teacher="tv_in1k"), teacher_recipe="torchvision 90 epochs",
                  teacher_top1=69.76)
    b = _recorded(seeds("convnext_pico/baseline"), teacher_recipe="ConvNeXt 300 epochs", teacher_top1=75.5)
    result, _ = audit(a, b)
    assert result.row("teacher pretraining").status == EQUAL  # both ImageNet-1k
    row = result.row("teacher recipe")
    assert row.status == DIFFERENT and "69.76 %" in row.note and PRETRAINING_DIFFERS in result.kinds
    unknown, _ = audit(seeds("resnet18/baseline", teacher="tv_in1k"), seeds("convnext_pico/baseline"))
    assert unknown.row("teacher recipe").status == UNKNOWN


def test_guide_projection_states_its_relu():
    result, _ = audit(seeds("wide_resnet50_2/baseline"), _recorded(seeds("convnext_tiny_guide/baseline"),
                                                                    projection="guide"))
    assert "ReLU" in result.row("projection").note and "non-negative" in result.row("projection").note


def test_verdict_without_a_test():
    v = verdict({**STATS_ROW, "comparison": "b vs a", "n": 2, "p_holm": math.nan, "ci_low": math.nan,
                 "ci_high": math.nan, "d_z": math.nan, "diff_min": -0.01, "diff_max": 0.03, "mde_80": 0.31,
                 "n_for_observed": 12.0, "verdict": "too few units",
                 "note": "too few units for a test (n = 2 categories; 5 needed)"})
    assert v.kind == "na" and "n = 2 categories" in v.text and "significant" not in v.text
    assert "too few units for a test (n = 2 categories; 5 needed)" in v.text and "range [\u22121.0, +3.0]" in v.text
    assert "differences above 31.0 pt are detectable" in v.text and "12 categories would detect +1.2 pt" in v.text
    assert v.flags == []


# --------------------------------------------------------------------------- random-teacher caveat
def test_random_teacher_caveat_text():
    kw = dict(weights="none", teacher="random")
    with_init, facts = audit(seeds("resnet18/baseline", family="resnet", random_init=INIT, **kw),
                             seeds("convnext_pico/baseline", random_init=INIT, **kw))
    (caveat,) = [c for c in with_init.caveats if c.kind == RANDOM_INIT]
    assert "architecture prior only, no pretraining" in caveat.text
    assert "every residual branch active" in caveat.text and caveat.text.count("every residual branch") == 1
    (headline,) = [h for h in headline_caveats([with_init], facts) if h.kind == RANDOM_INIT]
    assert "architecture prior only, no pretraining" in headline.text and "every residual branch active" in headline.text
    without, _ = audit(seeds("resnet18/baseline", family="resnet", **kw), seeds("convnext_pico/baseline", **kw))
    (caveat,) = [c for c in without.caveats if c.kind == RANDOM_INIT]
    assert "architecture prior only" in caveat.text and "residual branch" not in caveat.text


# --------------------------------------------------------------------------- reproduction check
def _summary(arm: str, pro_rd4ad: bool = True) -> pd.DataFrame:
    rows = []
    for category in ("bottle", "cable"):
        for seed in (0, 1):
            row = {"arm": arm, "category": category, "seed": seed, "image_auroc": 0.97 + 0.01 * seed,
                   "pixel_auroc": 0.96, "aupro": 0.91}
            if pro_rd4ad:
                row["pro_rd4ad"] = 0.93
            rows.append(row)
    return pd.DataFrame(rows)


def test_reproduction_check_only_for_mvtec_with_the_paper_arm():
    arm = "wide_resnet50_2/baseline"
    check = reproduction_check({"dataset": {"name": "mvtec"}, "image_size": 256, "epochs": 200}, _summary(arm), [arm])
    assert check is not None and check.arm == arm
    assert [(r.metric, r.paper) for r in check.rows] == [("image_auroc", "98.5"), ("pixel_auroc", "97.8"),
                                                          ("pro_rd4ad", "93.9")]
    assert check.rows[0].ours == "97.5 ± 0.7" and check.rows[0].gap == "\u22121.0 pt"
    assert check.rows[2].ours.startswith("93.0") and check.rows[2].gap == "\u22120.9 pt"
    assert "pro_rd4ad" in check.note and "not with the MVTec" in check.note and "Deng & Li" in check.note
    assert reproduction_check({"dataset": {"name": "visa"}}, _summary(arm), [arm]) is None
    assert reproduction_check({"dataset": {"name": "mvtec"}}, _summary("resnet18/baseline"),
                              ["resnet18/baseline"]) is None


def test_reproduction_check_without_pro_rd4ad_says_na():
    arm = "wide_resnet50_2/baseline"
    check = reproduction_check({"dataset": {"name": "mvtec"}}, _summary(arm, pro_rd4ad=False), [arm])
    assert check.rows[2].ours.startswith("n/a") and check.rows[2].gap == "—"


# --------------------------------------------------------------------------- arm caveats
def _summary_rows(arm: str, values: dict[str, list[float]]) -> list[dict]:
    return [{"arm": arm, "category": c, "seed": s, "image_auroc": v, "epochs": 200}
            for c, vs in values.items() for s, v in enumerate(vs)]


def test_at_chance_fires_on_a_random_arm_and_not_on_efficientnet_lite0():
    from rd.report.caveats import at_chance

    summary = pd.DataFrame(_summary_rows("resnet18/baseline", {"grass": [0.47, 0.48, 0.46], "gravel": [0.49, 0.5, 0.48]})
                           + _summary_rows("efficientnet_lite0/baseline", {"grass": [0.95, 0.96, 0.95],
                                                                           "gravel": [0.97, 0.97, 0.98]}))
    hit = at_chance("resnet18/baseline", summary, "image_auroc")
    assert hit is not None and "includes 50" in hit.detail and "image AUROC 48.0 %" in hit.detail
    assert at_chance("efficientnet_lite0/baseline", summary, "image_auroc") is None
    assert at_chance("resnet18/baseline", summary, "aupro") is None  # not an AUROC-type metric


def test_not_converged_shows_the_triggering_number():
    from rd.report.caveats import not_converged

    def with_history(losses, epochs):
        r = run("resnet18/baseline", epochs=epochs)
        r.history = pd.DataFrame({"epoch": range(1, len(losses) + 1), "loss": losses})
        return r

    falling = not_converged("resnet18/baseline", [with_history([1.0, 0.5, 0.45], 200)])
    assert falling is not None and "loss −10.0% in the last epoch" in falling.detail
    assert not_converged("resnet18/baseline", [with_history([1.0, 0.5, 0.495], 200)]) is None  # 1 % < 2 %
    short = not_converged("resnet18/baseline", [with_history([1.0, 0.5, 0.5], 49)])
    assert short is not None and "49 of 200 epochs" in short.detail
    assert not_converged("resnet18/baseline", [with_history([1.0, 0.5, 0.5], 50)]) is None


def test_student_cannot_fit_needs_a_relu_student_and_signed_features():
    from rd.report.caveats import cannot_fit

    smoke = {"convnext_pico": {"negative_fraction": [0.47, 0.52, 0.5], "loss_floor": 0.86},
             "resnet18": {"negative_fraction": [0.0, 0.0, 0.0], "loss_floor": 0.0}}

    def facts(arm, **keys):
        return arm_facts(arm, _recorded(seeds(arm), **keys), {})

    hit = cannot_fit(facts("convnext_pico/baseline", student_output="relu"), smoke)
    assert hit is not None and "0.47, 0.52, 0.50" in hit.detail and "loss floor 0.86" in hit.detail
    assert cannot_fit(facts("convnext_pico/baseline", student_output="linear"), smoke) is None
    assert cannot_fit(facts("convnext_pico/baseline", student_output="relu", projection="guide"), smoke) is None
    assert cannot_fit(facts("resnet18/baseline", student_output="relu"), smoke) is None
    assert cannot_fit(facts("convnext_pico/baseline"), smoke) is None  # output not recorded: no claim
