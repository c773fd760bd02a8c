"""The VisA, MVTec AD 2 and BTAD readers, on small trees in each dataset's own layout
(tests/helpers/dataset_trees.py: JPEG for VisA, PNG for MVTec AD 2, BMP/PNG for BTAD as each
BTAD product ships them, masks in the dataset's own value convention). Checked: the records,
the loaded tensors, one test per validation error, manifest hashes, a dry run of each preset,
and (slow) one tiny end-to-end run on the VisA tree.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rd.data import CATEGORIES, DATASETS, load_split, prepare_category, scan, validate
from rd.errors import RDError
from tests.helpers import workflow_runner as wr
from tests.helpers.dataset_trees import (BTAD_EXT, make_btad, make_mvtec_ad2, make_visa, read_split, write_mask,
                                         write_split)

REPO = Path(__file__).resolve().parents[1]
BUILDERS = {"visa": (make_visa, "candle"), "mvtec_ad2": (make_mvtec_ad2, "can"), "btad": (make_btad, "01")}


# --------------------------------------------------------------------------- records
def test_visa_records_follow_the_split_file(tmp_path):
    root = make_visa(tmp_path / "VisA")
    index = scan("visa", root, "candle")
    assert [s.rel for s in index.train] == [f"Data/Images/Normal/{i:04d}.JPG" for i in range(4)]
    good = [s for s in index.test if s.label == 0]
    bad = [s for s in index.test if s.label == 1]
    assert [s.rel for s in good] == ["Data/Images/Normal/0004.JPG", "Data/Images/Normal/0005.JPG"]
    assert {s.defect_type for s in good} == {"good"} and {s.defect_type for s in bad} == {"anomaly"}
    assert [s.mask_path for s in bad] == [root / "candle/Data/Masks/Anomaly/000.png",
                                          root / "candle/Data/Masks/Anomaly/001.png"]
    assert index.defect_types == ["anomaly"]
    listed = {s.path for s in index.train + index.test}
    assert root / "candle/Data/Images/Normal/0006.JPG" not in listed        # on disk, in no row
    assert all("/pcb1/" not in str(p) for p in listed)                      # other objects' rows
    # the split file, not the folders, decides: move a train row to test
    rows = read_split(root)
    moved = next(r for r in rows if r[0] == "candle" and r[1] == "train")
    moved[1] = "test"
    write_split(root, rows)
    index = scan("visa", root, "candle")
    assert len(index.train) == 3 and moved[3].removeprefix("candle/") in [s.rel for s in index.test if s.label == 0]


def test_visa_load_split_binarises_small_mask_values(tmp_path):
    import torch
    import torch.nn.functional as F

    root = make_visa(tmp_path / "VisA")
    raw = np.asarray(Image.open(root / "candle/Data/Masks/Anomaly/001.png"))
    assert set(np.unique(raw)) == {0, 1, 2}                                 # VisA values, not 255
    train = load_split(root, "candle", "train", 32, dataset="visa")
    assert train["images"].shape == (4, 3, 32, 32) and train["masks"].shape == (4, 1, 32, 32)
    assert not train["masks"].any() and train["labels"].tolist() == [0] * 4
    test = load_split(root, "candle", "test", 32, dataset="visa")
    assert test["images"].shape == (4, 3, 32, 32) and test["images"].dtype == torch.float32
    assert test["labels"].tolist() == [1, 1, 0, 0]                          # sorted by path: Anomaly < Normal
    assert test["defect_types"] == ["anomaly", "anomaly", "good", "good"]
    assert test["paths"][1] == str(root / "candle/Data/Images/Anomaly/001.JPG")
    # every non-zero pixel is defect; the non-square mask is resized (nearest) to the square size
    expected = F.interpolate(torch.from_numpy(raw > 0)[None, None].to(torch.uint8), size=(32, 32),
                             mode="nearest-exact")[0].bool()
    assert torch.equal(test["masks"][1], expected) and expected.sum() > 20
    assert not test["masks"][2:].any()


def test_mvtec_ad2_records_use_test_public_only(tmp_path):
    root = make_mvtec_ad2(tmp_path / "mvtec_ad_2")
    index = scan("mvtec_ad2", root, "can")
    assert [s.rel for s in index.train] == [f"train/good/{i:03d}_regular.png" for i in range(4)]
    assert [(s.rel, s.label, s.defect_type) for s in index.test] == [
        ("test_public/bad/000_regular.png", 1, "anomaly"), ("test_public/bad/001_regular.png", 1, "anomaly"),
        ("test_public/good/000_regular.png", 0, "good"), ("test_public/good/001_regular.png", 0, "good")]
    assert index.test[0].mask_path == root / "can/test_public/ground_truth/bad/000_regular_mask.png"
    assert not any("private" in s.rel or "validation" in s.rel for s in index.train + index.test)
    test = load_split(root, "can", "test", 32, dataset="mvtec_ad2")
    assert test["masks"].shape == (4, 1, 32, 32) and test["masks"][:2].any() and not test["masks"][2:].any()
    m = validate("mvtec_ad2", root, "can")
    assert (m["n_train"], m["n_test_good"], m["n_test_defect"], m["n_validation"]) == (4, 2, 2, 2)
    assert m["test_set"] == "test_public" and m["defect_types"] == ["anomaly"]


@pytest.mark.parametrize("cat", ["01", "02", "03"])
def test_btad_records_per_product_extensions(tmp_path, cat):
    root = make_btad(tmp_path / "btad", categories=(cat,))
    img_ext, mask_ext = BTAD_EXT[cat]
    index = scan("btad", root, cat)
    assert [s.rel for s in index.train] == [f"train/ok/{i:04d}{img_ext}" for i in range(4)]
    bad = [s for s in index.test if s.label == 1]
    assert [s.mask_path.name for s in bad] == [f"0000{mask_ext}", f"0001{mask_ext}"]
    assert Counter(s.defect_type for s in index.test) == {"good": 2, "anomaly": 2}
    test = load_split(root, cat, "test", 32, dataset="btad")
    assert test["images"].shape == (4, 3, 32, 32)
    assert [bool(m.any()) for m in test["masks"]] == [bool(lab) for lab in test["labels"]]


# --------------------------------------------------------------------------- validation errors
def _visa_rows(root: Path, edit) -> None:
    rows = read_split(root)
    write_split(root, edit(rows))


def _first(rows, split, label, cat="candle"):
    return next(r for r in rows if r[0] == cat and r[1] == split and r[2] == label)


def _visa_set_first_anomaly(root, column, value):
    """Set one cell of the first anomalous test row; the damaged row's image is returned."""
    def edit(rows):
        _first(rows, "test", "anomaly")[column] = value
        return rows
    _visa_rows(root, edit)
    return root / "candle/Data/Images/Anomaly/000.JPG"


def _visa_empty_mask_column(root):
    return _visa_set_first_anomaly(root, 4, "")


def _visa_duplicate_row(root):
    _visa_rows(root, lambda rows: rows + [list(_first(rows, "train", "normal"))])
    return root / _first(read_split(root), "train", "normal")[3]


def _visa_anomaly_in_train(root):
    return _visa_set_first_anomaly(root, 1, "train")


def _visa_no_rows(root):
    _visa_rows(root, lambda rows: [r for r in rows if r[0] != "candle"])
    return root / "split_csv/1cls.csv"


def _unlink(rel):
    def breaker(root):
        (root / rel).unlink()
        return root / rel
    return breaker


def _rmtree(rel, named=None):
    def breaker(root):
        shutil.rmtree(root / rel)
        return root / (named or rel)
    return breaker


def _empty_dir(rel):
    def breaker(root):
        for p in (root / rel).iterdir():
            p.unlink()
        return root / rel
    return breaker


def _resize_mask(rel):
    def breaker(root):
        write_mask(root / rel, (20, 20), (1,))
        return root / rel
    return breaker


ERRORS = {
    "visa/missing_split_file": ("visa", _unlink("split_csv/1cls.csv"), "Split file"),
    "visa/missing_category": ("visa", _rmtree("candle"), "does not exist"),
    "visa/category_not_in_split": ("visa", _visa_no_rows, "has no rows for category 'candle'"),
    "visa/row_file_missing": ("visa", _unlink("candle/Data/Images/Normal/0002.JPG"), "which does not exist"),
    "visa/anomaly_empty_mask_column": ("visa", _visa_empty_mask_column, "has no mask"),
    "visa/mask_file_missing": ("visa", _unlink("candle/Data/Masks/Anomaly/001.png"), "has no mask"),
    "visa/mask_other_size": ("visa", _resize_mask("candle/Data/Masks/Anomaly/001.png"), "20x20"),
    "visa/duplicate_row": ("visa", _visa_duplicate_row, "twice"),
    "visa/anomaly_in_train": ("visa", _visa_anomaly_in_train, "in the train split"),
    "mvtec_ad2/missing_category": ("mvtec_ad2", _rmtree("can"), "does not exist"),
    "mvtec_ad2/no_test_public": ("mvtec_ad2", _rmtree("can/test_public", "can/test_public/good"), "Wrong layout"),
    "mvtec_ad2/bad_without_mask": ("mvtec_ad2", _unlink("can/test_public/ground_truth/bad/001_regular_mask.png"),
                                   "has no mask"),
    "mvtec_ad2/mask_other_size": ("mvtec_ad2", _resize_mask("can/test_public/ground_truth/bad/000_regular_mask.png"),
                                  "20x20"),
    "btad/missing_category": ("btad", _rmtree("01"), "does not exist"),
    "btad/ko_without_mask": ("btad", _unlink("01/ground_truth/ko/0001.png"), "has no mask"),
    "btad/mask_other_size": ("btad", _resize_mask("01/ground_truth/ko/0000.png"), "20x20"),
    "btad/no_train_folder": ("btad", _rmtree("01/train", "01/train/ok"), "Wrong layout"),
    "btad/empty_train": ("btad", _empty_dir("01/train/ok"), "Empty train set"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_validation_error_names_the_file(tmp_path, case):
    dataset, breaker, needle = ERRORS[case]
    build, cat = BUILDERS[dataset]
    root = build(tmp_path / dataset)
    path = breaker(root)
    with pytest.raises(RDError) as err:
        validate(dataset, root, cat)
    assert needle in err.value.problem and str(path) in err.value.problem, str(err.value)
    assert err.value.fix


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rd", "prepare-data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dataset", list(BUILDERS))
def test_prepare_data_cli(tmp_path, dataset):
    """prepare-data validates and writes the manifest; a broken tree: one line, exit 2, no manifest."""
    build, cat = BUILDERS[dataset]
    root = build(tmp_path / dataset)
    out = tmp_path / "m" / f"{cat}.json"
    ok = _cli("--dataset", dataset, "--root", str(root), "--category", cat, "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    m = json.loads(out.read_text())
    assert m["dataset"] == dataset and m["generated"] is False and m["n_train"] == 4
    assert re.fullmatch(r"[0-9a-f]{64}", m["content_sha256"]) and m["split_rule"]
    mask = next(s.mask_path for s in scan(dataset, root, cat).test if s.mask_path)
    _resize_mask(mask.relative_to(root))(root)
    bad = _cli("--dataset", dataset, "--root", str(root), "--category", cat, "--out", str(out))
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    assert str(mask) in lines[0] and " Fix: " in lines[0] and "Traceback" not in bad.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- manifests
@pytest.mark.parametrize("dataset", list(BUILDERS))
def test_manifest_hashes_are_stable(tmp_path, dataset):
    build, cat = BUILDERS[dataset]
    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    ma, mb = validate(dataset, a, cat), validate(dataset, b, cat)
    assert ma == validate(dataset, a, cat)                                  # same tree, same manifest
    assert {k: v for k, v in ma.items() if k != "root"} == {k: v for k, v in mb.items() if k != "root"}
    # one changed pixel: same file list, other content
    first = scan(dataset, b, cat).train[0].path
    im = Image.open(first)
    arr = np.array(im)
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(first, format=im.format)
    mc = validate(dataset, b, cat)
    assert mc["file_list_sha256"] == ma["file_list_sha256"] and mc["content_sha256"] != ma["content_sha256"]


def test_visa_manifest_records_the_split(tmp_path):
    root = make_visa(tmp_path / "VisA")
    before = prepare_category("visa", root, "candle")
    assert before["split_rule"] == "split_csv/1cls.csv" and before["seed"] is None
    assert (before["n_train"], before["n_test_good"], before["n_test_defect"]) == (4, 2, 2)
    assert before["n_test_per_type"] == {"anomaly": 2}

    def edit(rows):
        _first(rows, "train", "normal")[1] = "test"
        return rows
    _visa_rows(root, edit)
    after = prepare_category("visa", root, "candle")
    assert after["file_list_sha256"] == before["file_list_sha256"]        # same files ...
    assert after["split_sha256"] != before["split_sha256"]                 # ... other split


# --------------------------------------------------------------------------- config, CLI, presets
def test_dataset_lists_agree():
    from rd.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    cli_datasets = {tuple(a.choices) for sub in commands.values() for a in sub._actions if a.dest == "dataset"}
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    ds = schema["properties"]["dataset"]
    assert ds["properties"]["name"]["enum"] == list(DATASETS)
    assert cli_datasets == {tuple(DATASETS)}   # every command's --dataset offers the same list
    per_dataset = {rule["if"]["properties"]["name"]["const"]: rule["then"]["properties"]["categories"]["items"]["enum"]
                   for rule in ds["allOf"]}
    assert per_dataset == {name: list(cats) for name, cats in CATEGORIES.items()}
    for name in CATEGORIES:
        preset = yaml.safe_load((REPO / f"workflow/configs/{name}.yaml").read_text())
        assert preset["dataset"]["name"] == name and preset["dataset"]["categories"] == list(CATEGORIES[name])


def test_unknown_category_of_a_dataset_is_a_config_error(tmp_path):
    from snakemake.exceptions import WorkflowError

    root = tmp_path / "VisA"
    (root / "pcb9").mkdir(parents=True)
    with pytest.raises(WorkflowError, match=r"dataset\.categories\[0\]: 'pcb9' is not one of"):
        wr.check_config_in_process({"dataset": {"name": "visa", "root": str(root), "categories": ["pcb9"]}}, tmp_path)


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_preset_dry_run(tmp_path, name):
    preset = yaml.safe_load((REPO / f"workflow/configs/{name}.yaml").read_text())
    mvtec = yaml.safe_load((REPO / "workflow/configs/mvtec_ad.yaml").read_text())
    assert {k: v for k, v in preset.items() if k != "dataset"} == {k: v for k, v in mvtec.items() if k != "dataset"}
    root = tmp_path / "data"
    for cat in CATEGORIES[name]:
        (root / cat).mkdir(parents=True)      # a dry run only checks that the folders exist
    wd = wr.copy_workflow(tmp_path / "wf")
    jobs, text = wr.dry_run_text(wd, "-p", "--configfile", f"workflow/configs/{name}.yaml",
                                    "--config", f"dataset={{root: {root}}}")
    n_cat = len(CATEGORIES[name])
    n_runs = n_cat * len(preset["seeds"]) * len(preset["arms"])
    backbones = {a.split("/")[0] for a in preset["arms"]}
    lr_select, lr_gather = wr.lr_selection_jobs(preset)
    assert lr_select > 0  # the tuned arms choose their lr on held-out good images
    assert wr.counts(jobs) == Counter(prepare_data=n_cat, smoke=len(backbones), complexity=len(backbones),
                                      train=n_runs, evaluate=n_runs, lr_select=lr_select, lr_gather=lr_gather,
                                      aggregate=1, stats=1, write_config=1, report=1, all=1)
    assert {w["category"] for r, w in jobs if r == "train"} == set(CATEGORIES[name])
    for command in ("prepare-data", "train", "evaluate"):
        assert re.search(rf"python -m rd {command} .*--dataset {name}\b", text), command
    assert not (wd / "data").exists()


def test_visa_categories_override(tmp_path):
    root = tmp_path / "VisA"
    for cat in ("candle", "pcb1"):
        (root / cat).mkdir(parents=True)
    wd = wr.copy_workflow(tmp_path / "wf")
    jobs = wr.dry_run(wd, "--configfile", "workflow/configs/visa.yaml",
                                 "--config", f"dataset={{root: {root}, categories: [pcb1]}}", "seeds=[0]")
    assert wr.counts(jobs)["prepare_data"] == 1 and wr.counts(jobs)["train"] == 8  # the 8 arms of the preset, 1 seed
    assert {w["category"] for r, w in jobs if r == "train"} == {"pcb1"}


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_on_fake_visa(tmp_path):
    """The real workflow on a fake VisA tree: 1 category, 1 backbone (its 2 settings: stats needs a
    pair), 1 seed, 1 epoch, 32 px; produces the report."""
    root = make_visa(tmp_path / "VisA", categories=("candle",), n_train=6, n_test_good=3, n_anomaly=3)
    wd = wr.copy_workflow(tmp_path / "wf", with_rd=True)
    wr.write_config(wd / "visa_tiny.yaml", dataset={"name": "visa", "root": str(root), "categories": ["candle"]},
                    image_size=32, epochs=1, batch_size=4, seeds=[0], device="cpu", threads_per_job=1,
                    arms=["resnet18/baseline", "resnet18/tuned"],
                    comparisons=[["resnet18/baseline", "resnet18/tuned"]],
                    smoke={"image_sizes": [32]}, failure_cases=1)
    wr.snakemake(wd, "--configfile", "visa_tiny.yaml", timeout=900)
    manifest = json.loads((wd / "results/data/visa/candle.json").read_text())
    assert (manifest["dataset"], manifest["n_train"], manifest["n_test_defect"]) == ("visa", 6, 3)
    for setting in ("baseline", "tuned"):
        run = wd / f"results/runs/visa/candle/resnet18/{setting}/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 <= metrics["image_auroc"] <= 1.0 and metrics["n_test"] == 6 and metrics["n_anomalous"] == 3
        scores = (run / "scores.csv").read_text()
        assert "Data/Images/Anomaly/000.JPG" in scores
    html = (wd / "reports/report.html").read_text()
    assert len(html) > 1000 and "candle" in html and manifest["file_list_sha256"] in html
