"""VisA reader (Zou et al., "SPot-the-Difference Self-Supervised Pre-training for Anomaly
Detection and Segmentation", ECCV 2022).

Layout, exactly as the authors ship it (``VisA.tar``; no reorganisation step needed)::

    <root>/split_csv/1cls.csv                              the one-class split (decides train/test)
    <root>/<category>/Data/Images/Normal/*.JPG             normal images (train and test)
    <root>/<category>/Data/Images/Anomaly/*.JPG            anomalous images (test)
    <root>/<category>/Data/Masks/Anomaly/*.png             their masks

``1cls.csv`` has the columns ``object,split,label,image,mask``: ``split`` is ``train`` or
``test``, ``label`` ``normal`` or ``anomaly``, ``image`` and ``mask`` are paths relative to the
root (``mask`` is empty for normal rows). The split file, not the folders, decides which normal
images are trained on and which are tested: a file on disk that no row lists is not used, a row
whose file is missing is an error. The category's rows are hashed into the manifest
(``split_sha256``) because the file list alone does not show the split.

Masks are not 0/255: any non-zero pixel is a defect (the authors' own preparation script
binarises them the same way). VisA has no defect types: anomalous images are ``"anomaly"``.
Images are large (about 1500x1000) and not square; like anomalib and the published VisA results,
they are resized to the run's square ``image_size`` (aspect ratio not kept), masks with
nearest-neighbour resizing.

Checked against (2026-12-01) the authors' repository (github.com/amazon-science/spot-diff:
README, ``split_csv/1cls.csv``, ``utils/prepare_data.py``) and anomalib's VisA dataset.

Licence: CC BY 4.0 (stated in the authors' README).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from rd.data import layout
from rd.data.layout import CategoryIndex, Sample, category_folder
from rd.errors import RDError

NAME = "visa"
CATEGORIES: tuple[str, ...] = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
                               "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum")
SPLIT_FILE = "split_csv/1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
_ROOT_FIX = "point dataset.root (--root) at the VisA folder that holds split_csv/ and the category folders."
_RESTORE = "restore it from the VisA archive, or use the split file that came with your copy."


def _read_rows(split_file: Path, category: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every row of ``category`` in the split file."""
    try:
        with open(split_file, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RDError(f"Split file {split_file} lacks the column(s) {', '.join(missing)} "
                              f"(header: {','.join(reader.fieldnames or []) or 'empty'}).",
                              f"use the VisA split file {SPLIT_FILE}, whose header is {','.join(COLUMNS)}.")
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k})
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RDError(f"Cannot read split file {split_file}: {exc}.", _RESTORE) from exc
    mine = [(n, row) for n, row in rows if row.get("object") == category]
    if not mine:
        objects = sorted({row.get("object", "") for _, row in rows} - {""})
        raise RDError(f"Split file {split_file} has no rows for category {category!r} "
                      f"(objects in it: {', '.join(objects) or 'none'}).",
                      "check the category name (case matters) or use the split file of your VisA copy.")
    return mine


def _category_path(root: Path, category: str, value: str, split_file: Path, line: int, what: str) -> tuple[Path, str]:
    """(absolute path, category-relative POSIX path) of a root-relative path from the split file."""
    rel = PurePosixPath(value)
    if rel.is_absolute() or not rel.parts or rel.parts[0] != category or ".." in rel.parts:
        raise RDError(f"{split_file} line {line}: the {what} {value!r} is not inside the category folder "
                      f"{category}/.", "use the split file shipped with VisA (paths relative to the root).")
    return root / Path(*rel.parts), PurePosixPath(*rel.parts[1:]).as_posix()


def scan_category(root: str | os.PathLike, category: str, *, warn: bool = True) -> CategoryIndex:
    """List one VisA category from the split file (no decoding); RDError naming the path on any problem."""
    root = Path(root)
    split_file = root / SPLIT_FILE
    if root.is_dir() and not split_file.is_file():
        raise RDError(f"Split file {split_file} is missing (VisA ships it as {SPLIT_FILE} in the archive's root).",
                      _ROOT_FIX)
    root, folder = category_folder(root, category)
    train: list[Sample] = []
    test: list[Sample] = []
    seen: dict[str, int] = {}
    for line, row in _read_rows(split_file, category):
        split, label = row.get("split", ""), row.get("label", "")
        if split not in ("train", "test"):
            raise RDError(f"{split_file} line {line}: split {split!r} is not train or test.", _RESTORE)
        if label not in ("normal", "anomaly"):
            raise RDError(f"{split_file} line {line}: label {label!r} is not normal or anomaly.", _RESTORE)
        path, rel = _category_path(root, category, row.get("image", ""), split_file, line, "image")
        if rel in seen:
            raise RDError(f"{split_file} lists {path} twice (lines {seen[rel]} and {line}).",
                          "list every image once, in one split: a test image seen in training biases the result.")
        seen[rel] = line
        if not path.is_file():
            raise RDError(f"{split_file} line {line} lists {path}, which does not exist.", _RESTORE)
        if label == "normal":
            (train if split == "train" else test).append(Sample(path, rel, 0, "good", None))
            continue
        if split == "train":
            raise RDError(f"{split_file} line {line} puts the anomalous image {path} in the train split.",
                          f"RD trains on normal images only: use the one-class split {SPLIT_FILE}.")
        if not row.get("mask"):
            raise RDError(f"Anomalous image {path} has no mask: its row (line {line} of {split_file}) "
                          "has an empty mask column.", "add the mask path to the row, or " + _RESTORE)
        mask, _ = _category_path(root, category, row["mask"], split_file, line, "mask")
        if not mask.is_file():
            raise RDError(f"Anomalous image {path} has no mask: {mask} (line {line} of {split_file}) does not exist.",
                          _RESTORE)
        test.append(Sample(path, rel, 1, layout.ANOMALY, mask))
    where = f"the {{}} rows of {category} in {split_file}"
    return layout.finish_index(root, category, folder, train, test, [], train_where=where.format("train"),
                               test_where=where.format("test"), warn=warn)


def split_sha256(index: CategoryIndex) -> str:
    """sha256 of the category's split as ``split,label,path`` lines (sorted): the file list hides it."""
    lines = [f"{split},{'anomaly' if s.label else 'normal'},{s.rel}"
             for split, samples in (("train", index.train), ("test", index.test)) for s in samples]
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def manifest_extra(index: CategoryIndex) -> dict[str, Any]:
    """What the MVTec manifest lacks for this dataset: the split file and the hash of its rows."""
    return {"split_rule": SPLIT_FILE, "split_sha256": split_sha256(index)}
