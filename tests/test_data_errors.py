"""Bad-input catalogue for data: every broken tree fails in ``validate_category`` with
an RDError naming the path, and through ``python -m rd prepare-data`` with exit code 2, one
stderr line starting with "error:" that names the path, no traceback and no manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rd.data import validate_category
from rd.data import textures
from rd.errors import RDError

CAT = "gravel"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    textures.generate(root, CAT, seed=0, n_train=6, n_test_good=3, n_per_defect=2)
    return root


def _png(path: Path, size=(128, 128), mode="L") -> None:
    Image.new(mode, size).save(path)


# Each breaker gets the copied category folder and returns the path the message must name
# (relative to the dataset root of the copy, or absolute for the root itself).
def _missing_category(cat: Path) -> Path:
    shutil.rmtree(cat)
    return cat


def _no_train_good(cat: Path) -> Path:
    shutil.rmtree(cat / "train")
    return cat / "train" / "good"


def _empty_train(cat: Path) -> Path:
    for p in (cat / "train" / "good").iterdir():
        p.unlink()
    (cat / "train" / "good" / ".DS_Store").write_bytes(b"junk")   # ignored, so still empty
    return cat / "train" / "good"


def _no_test(cat: Path) -> Path:
    shutil.rmtree(cat / "test")
    return cat / "test"


def _defect_without_mask(cat: Path) -> Path:
    (cat / "ground_truth" / "hole" / "001_mask.png").unlink()
    return cat / "test" / "hole" / "001.png"


def _no_ground_truth_folder(cat: Path) -> Path:
    shutil.rmtree(cat / "ground_truth" / "scratch")
    return cat / "test" / "scratch" / "000.png"


def _mask_other_size(cat: Path) -> Path:
    mask = cat / "ground_truth" / "stain" / "000_mask.png"
    _png(mask, size=(64, 64))
    return mask


def _corrupt_png(cat: Path) -> Path:
    path = cat / "test" / "good" / "001.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    return path


def _truncated_png(cat: Path) -> Path:
    path = cat / "train" / "good" / "003.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_mask(cat: Path) -> Path:
    path = cat / "ground_truth" / "cut_paste" / "001_mask.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    return path


def _empty_file_with_image_extension(cat: Path) -> Path:
    path = cat / "test" / "scratch" / "001.png"
    path.write_bytes(b"")
    return path


def _text_named_png(cat: Path) -> Path:
    path = cat / "train" / "good" / "notes.png"
    path.write_text("this is not an image")
    return path


def _empty_defect_folder(cat: Path) -> Path:
    (cat / "test" / "crack").mkdir()
    return cat / "test" / "crack"


def _only_good_in_test(cat: Path) -> Path:
    for kind in textures.DEFECT_TYPES:
        shutil.rmtree(cat / "test" / kind)
    return cat / "test"


def _no_test_good(cat: Path) -> Path:
    shutil.rmtree(cat / "test" / "good")
    return cat / "test"


CASES = {
    "missing_category": (_missing_category, "does not exist"),
    "no_train_good": (_no_train_good, "Wrong layout"),
    "empty_train": (_empty_train, "Empty train set"),
    "no_test": (_no_test, "Wrong layout"),
    "defect_without_mask": (_defect_without_mask, "has no mask"),
    "no_ground_truth_folder": (_no_ground_truth_folder, "has no mask"),
    "mask_other_size": (_mask_other_size, "64x64"),
    "corrupt_png": (_corrupt_png, "Cannot read image"),
    "truncated_png": (_truncated_png, "Cannot read image"),
    "truncated_mask": (_truncated_mask, "Cannot read mask"),
    "empty_png": (_empty_file_with_image_extension, "Cannot read image"),
    "text_named_png": (_text_named_png, "Cannot read image"),
    "empty_defect_folder": (_empty_defect_folder, "holds no images"),
    "only_good_in_test": (_only_good_in_test, "no defect folders"),
    "no_test_good": (_no_test_good, "no good images"),
}


@pytest.fixture
def broken(request, small_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    breaker, needle = CASES[request.param]
    return root, breaker(root / CAT), needle


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rd", "prepare-data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _assert_one_error_line(proc: subprocess.CompletedProcess, path: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0] and " Fix: " in lines[0], lines[0]


@pytest.mark.parametrize("broken", list(CASES), indirect=True)
def test_validate_names_the_path(broken):
    root, path, needle = broken
    with pytest.raises(RDError) as err:
        validate_category(root, CAT)
    assert str(path) in err.value.problem and needle in err.value.problem, str(err.value)
    assert err.value.fix


@pytest.mark.parametrize("broken", list(CASES), indirect=True)
def test_cli_one_line_exit_2_no_manifest(broken, tmp_path):
    root, path, needle = broken
    out = tmp_path / "manifests" / "m.json"
    proc = _cli("--dataset", "mvtec", "--root", str(root), "--category", CAT, "--out", str(out))
    _assert_one_error_line(proc, path)
    assert needle in proc.stderr
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(RDError, match="does not exist") as err:
        validate_category(root, CAT)
    assert str(root) in err.value.problem
    out = tmp_path / "m.json"
    _assert_one_error_line(_cli("--dataset", "mvtec", "--root", str(root), "--category", CAT, "--out", str(out)), root)
    assert not out.exists()


def test_missing_category_lists_existing(small_root):
    with pytest.raises(RDError) as err:
        validate_category(small_root, "carpet")
    assert str(small_root / "carpet") in err.value.problem and "gravel" in err.value.problem


def test_stale_manifest_removed_on_error(small_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    out = tmp_path / "m.json"
    ok = _cli("--dataset", "mvtec", "--root", str(root), "--category", CAT, "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["n_train"] == 6
    path = _truncated_png(root / CAT)
    _assert_one_error_line(_cli("--dataset", "mvtec", "--root", str(root), "--category", CAT, "--out", str(out)), path)
    assert not out.exists()


def test_cli_textures_generate_then_seed_conflict(tmp_path):
    root, out = tmp_path / "data", tmp_path / "m.json"
    proc = _cli("--dataset", "textures", "--root", str(root), "--category", "grass", "--seed", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert (m["dataset"], m["category"], m["seed"], m["generated"], m["n_train"]) == ("textures", "grass", 2, True, 100)
    out2 = tmp_path / "m2.json"   # only generated files in it: a new seed regenerates it
    proc = _cli("--dataset", "textures", "--root", str(root), "--category", "grass", "--seed", "3", "--out", str(out2))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out2.read_text())["seed"] == 3
    (root / "grass" / "notes.txt").write_text("mine")   # now it holds a user file: refused, kept
    out3 = tmp_path / "m3.json"
    proc = _cli("--dataset", "textures", "--root", str(root), "--category", "grass", "--seed", "4", "--out", str(out3))
    _assert_one_error_line(proc, root / "grass")
    assert "notes.txt" in proc.stderr and not out3.exists()
    assert (root / "grass" / "notes.txt").read_text() == "mine"


def test_cli_unknown_texture(tmp_path):
    out = tmp_path / "m.json"
    proc = _cli("--dataset", "textures", "--root", str(tmp_path), "--category", "carpet", "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "brick, grass, gravel" in proc.stderr
    assert not out.exists()


def test_cli_non_image_file_warns_and_succeeds(small_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    (root / CAT / "test" / "good" / "Thumbs.db").write_bytes(b"junk")
    out = tmp_path / "m.json"
    proc = _cli("--dataset", "mvtec", "--root", str(root), "--category", CAT, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Thumbs.db" in proc.stderr and "Ignored" in proc.stderr
    assert json.loads(out.read_text())["ignored_files"] == ["test/good/Thumbs.db"]


def test_loader_raises_the_same_errors(small_root, tmp_path):
    from rd.data import load_split

    root = tmp_path / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    path = _mask_other_size(root / CAT)
    load_split(root, CAT, "train", 32)               # train split does not touch masks
    with pytest.raises(RDError, match="64x64") as err:
        load_split(root, CAT, "test", 32)
    assert str(path) in err.value.problem
    path = _truncated_png(root / CAT)
    with pytest.raises(RDError, match="Cannot read image") as err:
        load_split(root, CAT, "train", 32)
    assert str(path) in err.value.problem
