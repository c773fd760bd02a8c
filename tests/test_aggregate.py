"""rd.aggregate: summary.csv from run folders, complexity JSONs and Snakemake benchmark TSVs."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest

from rd.aggregate import (SUMMARY_COLUMNS, build_summary, parse_benchmark_path, read_summary,
                          write_summary)
from rd.errors import RDError
from helpers.report_fixtures import make_fake_results

ARMS = ("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    return make_fake_results(root, categories=("brick", "grass"), arms=ARMS, seeds=(0, 1, 2), epochs=3,
                             failure_k=1, failure_size=16)


def test_summary_columns_rows_and_values(fake, tmp_path):
    out = tmp_path / "summary.csv"
    frame = write_summary(fake["runs"], complexity=fake["complexity"], benchmarks=fake["benchmarks"], out=out)
    assert list(frame.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert list(frame.columns[len(SUMMARY_COLUMNS):]) == ["defect_auroc:crack", "defect_auroc:stain", "run_dir"]
    assert len(frame) == 2 * 3 * 3
    back = read_summary(out)
    assert list(back.columns) == list(frame.columns)
    run = Path(back.loc[0, "run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    train = json.loads((run / "train.json").read_text())
    comp = json.loads((Path(fake["complexity"][0]).parent / f"{metrics['backbone']}.json").read_text())
    row = back.iloc[0]
    assert (row["category"], row["backbone"], row["setting"], row["seed"]) == \
        (metrics["category"], metrics["backbone"], metrics["setting"], metrics["seed"])
    assert row["arm"] == metrics["arm"]
    assert row["image_auroc"] == metrics["image_auroc"]  # exact round trip through the CSV
    assert row["train_seconds"] == train["train_seconds"]
    assert row["params_total"] == comp["params"]["total"]
    assert row["gflops_total"] == comp["gflops"]["total"]
    assert row["defect_auroc:crack"] == metrics["per_defect_image_auroc"]["crack"]
    # benchmark TSVs matched by (category, backbone, setting, seed) and stage
    assert row["bench_train_s"] == pytest.approx(train["train_seconds"] + 2, abs=1e-4)
    assert row["bench_eval_s"] == pytest.approx(metrics["eval_seconds"] + 1, abs=1e-4)
    assert not back[["bench_train_s", "bench_train_max_rss_mb", "bench_eval_s"]].isna().any().any()
    # sorted
    keys = list(zip(back["category"], back["backbone"], back["setting"], back["seed"]))
    assert keys == sorted(keys)


def test_without_complexity_and_benchmarks_columns_stay_empty(fake):
    frame = build_summary(fake["runs"])
    assert list(frame.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert frame["gflops_total"].isna().all() and frame["bench_train_s"].isna().all()
    assert frame["params_teacher"].notna().all()  # from train.json
    # total falls back to teacher + student of train.json
    assert (frame["params_total"] == frame["params_teacher"] + frame["params_student"]).all()


def test_integer_facts_stay_int_from_train_json_to_the_report(fake, tmp_path):
    from rd.aggregate import INTEGER_COLUMNS
    from rd.report.facts import arm_facts
    from rd.report.inputs import load_run

    out = tmp_path / "summary.csv"
    write_summary(fake["runs"], complexity=fake["complexity"], out=out)
    header, first = out.read_text().splitlines()[:2]
    cells = dict(zip(header.split(","), first.split(",")))
    assert all("." not in cells[c] for c in INTEGER_COLUMNS)   # written as 64, not 64.0
    rows = read_summary(out).to_dict("records")
    train = json.loads((Path(rows[0]["run_dir"]) / "train.json").read_text())
    assert type(rows[0]["image_size"]) is int and rows[0]["image_size"] == train["image_size"]
    assert all(r[c] is None or type(r[c]) is int for r in rows for c in INTEGER_COLUMNS), \
        {c: type(rows[0][c]).__name__ for c in INTEGER_COLUMNS}
    assert all(type(r[c]) is int for r in rows for c in ("epochs", "params_student", "params_total"))
    runs = [load_run(r, out) for r in rows]
    facts = arm_facts(rows[0]["arm"], runs, {})
    assert facts.image_size == str(train["image_size"]) and facts.epochs == str(train["epochs"])
    assert all(type(n) is int for n in facts.student_params)


def test_a_fractional_integer_cell_is_named(fake, tmp_path):
    out = tmp_path / "summary.csv"
    write_summary(fake["runs"], out=out)
    lines = out.read_text().splitlines()
    col = lines[0].split(",").index("epochs")
    cells = lines[1].split(",")
    cells[col] = "2.5"
    out.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(RDError, match=r"line 2, column 'epochs': 2.5 is not an integer"):
        read_summary(out)


@pytest.mark.parametrize("path, expected", [
    ("results/benchmarks/train/textures/brick/resnet18/baseline/seed2.tsv",
     ("train", "textures", ("brick", "resnet18", "baseline", 2))),
    ("bench/evaluate/brick/resnet18/tuned/seed0.tsv", ("evaluate", None, ("brick", "resnet18", "tuned", 0))),
    ("/abs/b/eval/mvtec/screw/convnext_tiny/baseline/seed11.tsv",
     ("evaluate", "mvtec", ("screw", "convnext_tiny", "baseline", 11))),
])
def test_parse_benchmark_path(path, expected):
    assert parse_benchmark_path(path) == expected


@pytest.mark.parametrize("path", ["results/benchmarks/brick/resnet18/baseline/seed0.tsv",  # no stage
                                  "results/benchmarks/train/brick/resnet18/baseline/run0.tsv"])  # no seed<k>
def test_bad_benchmark_path_is_a_clear_error(path):
    with pytest.raises(RDError, match="seed<k>|stage"):
        parse_benchmark_path(path)


def test_unmatched_benchmark_warns_and_other_dataset_is_not_matched(fake, tmp_path):
    stray = tmp_path / "benchmarks" / "train" / "textures" / "brick" / "resnet18" / "baseline" / "seed9.tsv"
    other = tmp_path / "benchmarks" / "train" / "mvtec" / "brick" / "resnet18" / "baseline" / "seed0.tsv"
    for p in (stray, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("s\th:m:s\tmax_rss\n1.0\t0:00:01\t5.0\n")
    with pytest.warns(UserWarning, match="match no run"):
        frame = build_summary(fake["runs"], benchmarks=[str(stray), str(other)])
    assert frame["bench_train_s"].isna().all()


def test_two_benchmarks_for_one_run_are_an_error(fake, tmp_path):
    p1 = tmp_path / "a" / "train" / "brick" / "resnet18" / "baseline" / "seed0.tsv"
    p2 = tmp_path / "b" / "train" / "brick" / "resnet18" / "baseline" / "seed0.tsv"
    for p in (p1, p2):
        p.parent.mkdir(parents=True)
        p.write_text("s\tmax_rss\n1.0\t5.0\n")
    with pytest.raises(RDError, match="Several train benchmark files"):
        build_summary(fake["runs"], benchmarks=[str(p1), str(p2)])


def test_repeated_benchmark_rows_are_averaged(fake, tmp_path):
    p = tmp_path / "train" / "brick" / "resnet18" / "baseline" / "seed0.tsv"
    p.parent.mkdir(parents=True)
    p.write_text("s\th:m:s\tmax_rss\n1.0\t0:00:01\t5.0\n3.0\t0:00:03\tNA\n")
    frame = build_summary(fake["runs"], benchmarks=[str(p)])
    row = frame[(frame.category == "brick") & (frame.arm == "resnet18/baseline") & (frame.seed == 0)].iloc[0]
    assert row["bench_train_s"] == 2.0 and row["bench_train_max_rss_mb"] == 5.0
    assert math.isnan(row["bench_eval_s"])


def test_missing_metrics_names_path_and_fix(fake, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fake["runs"][0], run)
    (run / "metrics.json").unlink()
    with pytest.raises(RDError) as err:
        build_summary([str(run)])
    assert "metrics.json" in str(err.value) and "evaluate" in err.value.fix


def test_same_run_twice_and_mixed_folder_are_errors(fake, tmp_path):
    with pytest.raises(RDError, match="same run"):
        build_summary([fake["runs"][0], fake["runs"][0]])
    run = tmp_path / "mixed"
    shutil.copytree(fake["runs"][0], run)
    train = json.loads((run / "train.json").read_text())
    train["seed"] = 99
    (run / "train.json").write_text(json.dumps(train))
    with pytest.raises(RDError, match="train.json says"):
        build_summary([str(run)])


def test_odd_category_names_survive_the_csv(fake, tmp_path):
    run = tmp_path / "na"
    shutil.copytree(fake["runs"][0], run)
    for name in ("metrics.json", "train.json"):
        d = json.loads((run / name).read_text())
        d["category"] = "NA"
        (run / name).write_text(json.dumps(d))
    out = tmp_path / "s.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_summary([str(run)], out=out)
    assert read_summary(out).loc[0, "category"] == "NA"


def test_cli_aggregate(fake, tmp_path):
    from rd.cli import main

    out = tmp_path / "cli.csv"
    rc = main(["aggregate", "--runs", *fake["runs"], "--complexity", *fake["complexity"],
               "--benchmarks", *fake["benchmarks"], "--out", str(out)])
    assert rc == 0 and len(read_summary(out)) == 18
    assert main(["aggregate", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()
