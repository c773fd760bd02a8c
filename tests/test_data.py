"""The embedded texture dataset and the MVTec AD reader: determinism, layout, exact masks,
disjoint train/test regions, atomic generation and reuse, tensors from ``load_split``."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rd.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IgnoredFilesWarning,
    MVTecDataset,
    denormalize,
    load_split,
    prepare_category,
    validate_category,
)
from rd.data import textures
from rd.errors import RDError

CAT = "brick"


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def gen_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("textures")
    textures.generate(root, CAT, seed=0)
    return root


@pytest.fixture(scope="module")
def torch1():
    import torch

    torch.set_num_threads(1)
    return torch


# --------------------------------------------------------------------------- layout, provenance
def test_layout_counts_and_readme(gen_root):
    folder = gen_root / CAT
    assert len(list((folder / "train/good").glob("*.png"))) >= 100
    assert len(list((folder / "test/good").glob("*.png"))) >= 20
    assert len(textures.DEFECT_TYPES) >= 3
    for kind in textures.DEFECT_TYPES:
        imgs = sorted((folder / "test" / kind).glob("*.png"))
        assert len(imgs) >= 10
        for img in imgs:
            assert (folder / "ground_truth" / kind / f"{img.stem}_mask.png").is_file()
    some = Image.open(folder / "test/scratch/000.png")
    assert some.size == (128, 128) and some.mode == "RGB"
    arr = np.asarray(some)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
    readme = (folder / "README.txt").read_text()
    for needle in ("scikit-image", "CC0", "SYNTHETIC", "seed 0", f"generator version {textures.GENERATOR_VERSION}",
                   "skimage.data.brick()"):
        assert needle in readme, needle
    assert "synthetic" in (gen_root / "README.txt").read_text().lower()
    assert not list(gen_root.glob(".*partial*")), "temporary build folder left behind"


def test_masks_binary_nonempty_inside(gen_root):
    folder = gen_root / CAT
    for mask_path in sorted((folder / "ground_truth").rglob("*_mask.png")):
        m = np.asarray(Image.open(mask_path))
        assert m.shape == (128, 128) and m.dtype == np.uint8
        assert set(np.unique(m)) == {0, 255}, mask_path
        assert 8 <= (m > 0).sum() < 0.5 * m.size, mask_path


@pytest.mark.parametrize("category", textures.TEXTURES)
def test_masks_are_exactly_the_changed_pixels(category):
    records = textures.build_arrays(category, seed=3)
    defects = [r for r in records if r["mask"] is not None]
    assert {r["defect_type"] for r in defects} == set(textures.DEFECT_TYPES)
    for r in defects:
        changed = r["image"] != r["clean"]
        assert np.array_equal(changed, r["mask"]), r["rel"]
        assert r["mask"].any()
    for r in records:
        if r["mask"] is None:
            assert np.array_equal(r["image"], r["clean"])


def test_saved_files_equal_generated_arrays(gen_root):
    folder = gen_root / CAT
    records = {r["rel"]: r for r in textures.build_arrays(CAT, seed=0)}
    for rel in ("train/good/007.png", "test/good/003.png", "test/stain/004.png", "test/cut_paste/009.png"):
        r = records[rel]
        assert np.array_equal(np.asarray(Image.open(folder / rel))[..., 0], r["image"])
        if r["mask"] is not None:
            mask = np.asarray(Image.open(folder / "ground_truth" / r["defect_type"] / (Path(rel).stem + "_mask.png")))
            assert np.array_equal(mask > 0, r["mask"])
            assert np.array_equal(np.asarray(Image.open(folder / rel))[..., 0] != r["clean"], r["mask"])


def test_train_and_test_regions_disjoint(gen_root):
    folder = gen_root / CAT
    marker = json.loads((folder / textures.MARKER).read_text())
    size = marker["params"]["size"]
    photo = textures._photo(CAT)
    train_rows, test_rows = set(), set()
    for rel, (y, x) in marker["positions"].items():
        rows = set(range(y, y + size))
        (train_rows if rel.startswith("train/") else test_rows).update(rows)
        if "/good/" in rel:   # the file is exactly that crop of the photograph
            img = np.asarray(Image.open(folder / rel))[..., 0]
            assert np.array_equal(img, photo[y:y + size, x:x + size]), rel
    assert train_rows and test_rows and not (train_rows & test_rows)
    assert max(train_rows) < textures.TRAIN_ROWS[1] <= textures.TEST_ROWS[0] <= min(test_rows)
    assert len(marker["positions"]) == 100 + 20 + 10 * len(textures.DEFECT_TYPES)


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes(gen_root, tmp_path):
    again = textures.generate(tmp_path, CAT, seed=0)
    assert _hashes(again) == _hashes(gen_root / CAT)


def test_other_seed_other_bytes(gen_root, tmp_path):
    other = textures.generate(tmp_path, CAT, seed=1)
    a, b = _hashes(gen_root / CAT), _hashes(other)
    assert a.keys() == b.keys()
    images = [k for k in a if k.endswith(".png")]
    assert sum(a[k] != b[k] for k in images) > 0.95 * len(images)


# --------------------------------------------------------------------------- reuse, conflicts, atomicity
def test_reuse_same_seed_does_not_rewrite(gen_root):
    folder = gen_root / CAT
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert textures.generate(gen_root, CAT, seed=0) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_other_seed_regenerates_only_a_folder_of_generated_files(tmp_path):
    small = dict(n_train=4, n_test_good=2, n_per_defect=1, size=48)
    folder = textures.generate(tmp_path, CAT, seed=0, **small)
    textures.generate(tmp_path, CAT, seed=1, **small)               # only generated files: replaced
    assert textures.read_marker(folder)["seed"] == 1
    assert _hashes(folder) == _hashes(textures.generate(tmp_path / "fresh", CAT, seed=1, **small))
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(RDError) as err:
        textures.generate(tmp_path, CAT, seed=5, **small)
    assert "notes.txt" in err.value.problem and "move those files out" in err.value.fix
    assert (folder / "notes.txt").read_text() == "mine" and textures.read_marker(folder)["seed"] == 1
    (folder / "notes.txt").unlink()
    (folder / "train/good/000.png").write_bytes(b"changed")         # a changed generated file: kept
    with pytest.raises(RDError, match="changed"):
        textures.generate(tmp_path, CAT, seed=5, **small)
    assert (folder / "train/good/000.png").read_bytes() == b"changed"


def test_foreign_folder_is_never_overwritten(tmp_path):
    (tmp_path / CAT / "train" / "good").mkdir(parents=True)
    (tmp_path / CAT / "keep.txt").write_text("user data")
    with pytest.raises(RDError, match="not made by"):
        textures.generate(tmp_path, CAT, seed=0)
    assert (tmp_path / CAT / "keep.txt").read_text() == "user data"


def test_tampered_folder_is_detected(tmp_path):
    folder = textures.generate(tmp_path, CAT, seed=0, n_train=4, n_test_good=2, n_per_defect=1)
    (folder / "test/good/000.png").write_bytes((folder / "test/good/001.png").read_bytes())
    with pytest.raises(RDError, match="changed since"):
        textures.generate(tmp_path, CAT, seed=0, n_train=4, n_test_good=2, n_per_defect=1)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = textures._png

    def flaky(array):
        calls["n"] += 1
        if calls["n"] == 30:
            raise OSError("disk full (simulated)")
        return real(array)

    monkeypatch.setattr(textures, "_png", flaky)
    with pytest.raises(OSError, match="simulated"):
        textures.generate(tmp_path, CAT, seed=0)
    assert not (tmp_path / CAT).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("kwargs, match", [
    ({"category": "carpet"}, "Unknown texture category"),
    ({"category": CAT, "seed": -1}, "non-negative"),
    ({"category": CAT, "n_train": 0}, "positive integer"),
    ({"category": CAT, "size": 256}, "crop size"),
])
def test_generate_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(RDError, match=match):
        textures.generate(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- validation / manifest
def test_validate_manifest(gen_root):
    m = validate_category(gen_root, CAT)
    assert (m["n_train"], m["n_test_good"], m["n_test_defect"]) == (100, 20, 10 * len(textures.DEFECT_TYPES))
    assert m["defect_types"] == sorted(textures.DEFECT_TYPES)
    marker = textures.read_marker(gen_root / CAT)
    assert m["file_list_sha256"] == marker["file_list_sha256"]


def test_prepare_category_manifest(gen_root, tmp_path):
    out = tmp_path / "m" / "brick.json"
    m = prepare_category("textures", gen_root, CAT, seed=0, manifest_path=out)
    on_disk = json.loads(out.read_text())
    assert on_disk == m
    for key in ("dataset", "root", "category", "n_train", "n_test_good", "n_test_defect", "defect_types",
                "file_list_sha256", "content_sha256", "seed", "generated"):
        assert key in m, key
    assert m["dataset"] == "textures" and m["generated"] is True and m["seed"] == 0
    mv = prepare_category("mvtec", gen_root, CAT)
    assert mv["file_list_sha256"] == m["file_list_sha256"] and mv["generated"] is False and mv["seed"] is None


def test_non_image_files_ignored_with_warning(gen_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(gen_root / CAT, root / CAT)
    (root / CAT / "train/good/.DS_Store").write_bytes(b"\0\1junk")
    (root / CAT / "test/hole/Thumbs.db").write_bytes(b"junk")
    (root / CAT / "test/good/notes.txt").write_text("hello")
    with pytest.warns(IgnoredFilesWarning, match=r"Thumbs\.db"):
        m = validate_category(root, CAT)
    assert m["file_list_sha256"] == validate_category(gen_root, CAT)["file_list_sha256"]
    assert sorted(m["ignored_files"]) == ["test/good/notes.txt", "test/hole/Thumbs.db", "train/good/.DS_Store"]
    assert m["n_train"] == 100


# --------------------------------------------------------------------------- tensors
def test_load_split_tensors(gen_root, torch1):
    torch = torch1
    train = load_split(gen_root, CAT, "train", 128)
    assert train["images"].shape == (100, 3, 128, 128) and train["images"].dtype == torch.float32
    assert train["masks"].shape == (100, 1, 128, 128) and train["masks"].dtype == torch.bool
    assert not train["masks"].any() and train["labels"].sum() == 0
    assert train["paths"] == sorted(train["paths"])
    # ImageNet normalisation round-trips to the file's pixels
    first = np.asarray(Image.open(train["paths"][0]))
    assert np.abs(denormalize(train["images"][0]).astype(int) - first).max() <= 1
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(train["images"][0] * std + mean, torch.from_numpy(first.copy()).permute(2, 0, 1) / 255.0, atol=1e-6)

    test = load_split(gen_root, CAT, "test", 64)
    n = 20 + 10 * len(textures.DEFECT_TYPES)
    assert test["images"].shape == (n, 3, 64, 64) and test["masks"].shape == (n, 1, 64, 64)
    labels = test["labels"].tolist()
    for lab, kind, mask, path in zip(labels, test["defect_types"], test["masks"], test["paths"]):
        assert lab == (kind != "good") and f"/test/{kind}/" in path
        assert bool(mask.any()) == bool(lab)   # every defect keeps pixels after the nearest resize
    assert set(test["defect_types"]) == {"good", *textures.DEFECT_TYPES}
    # full-size masks equal the ground-truth files
    full = load_split(gen_root, CAT, "test", 128)
    i = full["paths"].index(str(gen_root / CAT / "test/scratch/002.png"))
    gt = np.asarray(Image.open(gen_root / CAT / "ground_truth/scratch/002_mask.png")) > 0
    assert np.array_equal(full["masks"][i, 0].numpy(), gt)


def test_dataset_items_match_load_split(gen_root, torch1):
    torch = torch1
    ds = MVTecDataset(gen_root, CAT, "test", 96)
    split = load_split(gen_root, CAT, "test", 96)
    assert len(ds) == len(split["paths"])
    for i in (0, len(ds) - 1, 25):
        item = ds[i]
        assert torch.equal(item["image"], split["images"][i]) and torch.equal(item["mask"], split["masks"][i])
        assert (item["label"], item["defect_type"], item["path"]) == (
            int(split["labels"][i]), split["defect_types"][i], split["paths"][i])


def test_bad_split(gen_root):
    # image_size is checked where it enters (the rd.params rule: CLI, config, model.pt), not here
    with pytest.raises(RDError, match="Unknown split"):
        load_split(gen_root, CAT, "val", 128)


def test_no_warning_on_clean_data(gen_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_category(gen_root, CAT)
