"""MVTec AD layout: the reader and validator (records, decoding and tensors: :mod:`rd.data.layout`).

Layout (any root in this shape works, the embedded textures dataset included)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<name>_mask.png     (0 = normal, > 0 = defect)

Validation happens before any work and fails with one :class:`rd.errors.RDError` naming the
exact path and the fix: missing root, missing category (the existing ones are listed), wrong
layout (no ``train/good`` or ``test``), empty train set, an empty defect folder, test set without
good images or without defects, a defect image without its mask, a mask whose size differs
from its image, an image or mask that cannot be decoded (every file is fully decoded, so
truncated files are caught; PNGs also get their chunk checksums and end marker verified).

Policy for files that are not images:

* A file whose extension is not an image extension (``.DS_Store``, ``Thumbs.db``, ``notes.txt``,
  ...), a hidden file (name starting with ``.``, e.g. macOS ``._000.png`` companions) and a
  sub-folder inside an image folder are **ignored with one warning** (``warnings.warn``,
  category :class:`~rd.data.layout.IgnoredFilesWarning`) that names them. They are not part of the data and
  do not enter ``file_list_sha256``.
* A file with an image extension (``.png .jpg .jpeg .bmp .tif .tiff .webp``, any case) that
  cannot be decoded is an **error**: it was meant to be data.
* A mask without its image (``ground_truth/<type>/x_mask.png`` but no ``test/<type>/x.*``) is
  ignored with a warning; an all-zero mask for a defect image gets a warning.

Ordering is deterministic: items are sorted by their relative path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rd.data.layout import (
    IMAGE_EXTENSIONS,
    CategoryIndex,
    Sample,
    category_folder,
    check_files,
    is_kind,
    list_images,
    load_sample,
    manifest_of,
    unfollowable,
    warn_ignored,
)
from rd.errors import RDError

_LAYOUT = ("expected the MVTec AD layout <category>/train/good, <category>/test/<good|defect>, "
           "<category>/ground_truth/<defect>/<name>_mask.png")


def _subfolders(folder: Path, ignored: list[str], base: Path) -> list[str]:
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            if is_kind(entry, "dir") and not entry.name.startswith("."):
                names.append(entry.name)
            else:
                ignored.append(Path(entry.path).relative_to(base).as_posix())
    return sorted(names)


def _find_mask(gt_dir: Path, stem: str) -> Path | None:
    preferred = gt_dir / f"{stem}_mask.png"
    if preferred.is_file():
        return preferred
    for ext in sorted(IMAGE_EXTENSIONS):
        for cand in (gt_dir / f"{stem}_mask{ext}", gt_dir / f"{stem}_mask{ext.upper()}"):
            if cand.is_file():
                return cand
            if os.path.lexists(cand):   # there, but a dangling link or a loop
                try:
                    cand.stat()
                except OSError as exc:
                    raise unfollowable(cand, exc) from exc
    return None


def scan_category(root: str | os.PathLike, category: str, *, warn: bool = True) -> CategoryIndex:
    """List a category and check its structure (no decoding). Raises RDError on any problem."""
    root, folder = category_folder(root, category)
    train_dir = folder / "train" / "good"
    if not train_dir.is_dir():
        raise RDError(f"Wrong layout: {train_dir} is missing ({_LAYOUT}).",
                      f"put the anomaly-free training images in {train_dir}.")
    test_dir = folder / "test"
    if not test_dir.is_dir():
        raise RDError(f"Wrong layout: {test_dir} is missing ({_LAYOUT}).",
                      f"put the test images in {test_dir}/good and {test_dir}/<defect type>.")

    ignored: list[str] = []
    train_imgs = list_images(train_dir, ignored, folder)
    if not train_imgs:
        raise RDError(f"Empty train set: {train_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).",
                      f"put the anomaly-free training images in {train_dir}.")
    train = [Sample(p, p.relative_to(folder).as_posix(), 0, "good", None) for p in train_imgs]

    test: list[Sample] = []
    defect_types: list[str] = []
    gt_root = folder / "ground_truth"
    for kind in _subfolders(test_dir, ignored, folder):
        imgs = list_images(test_dir / kind, ignored, folder)
        if not imgs:
            raise RDError(f"Test folder {test_dir / kind} holds no images.",
                          "add its images or delete the empty folder.")
        if kind == "good":
            test += [Sample(p, p.relative_to(folder).as_posix(), 0, "good", None) for p in imgs]
            continue
        defect_types.append(kind)
        gt_dir = gt_root / kind
        for p in imgs:
            mask = _find_mask(gt_dir, p.stem)
            if mask is None:
                raise RDError(f"Defect image {p} has no mask: expected {gt_dir / (p.stem + '_mask.png')}.",
                              "add the mask (0 = normal, 255 = defect, same size as the image) "
                              f"or move the image out of {test_dir / kind}.")
            test.append(Sample(p, p.relative_to(folder).as_posix(), 1, kind, mask))
        if gt_dir.is_dir():   # masks without an image: harmless, but say so
            stems = {p.stem for p in imgs}
            for m in list_images(gt_dir, ignored, folder):
                if not (m.stem.endswith("_mask") and m.stem[: -len("_mask")] in stems):
                    ignored.append(m.relative_to(folder).as_posix() + " (mask without image)")
    if not any(s.label == 0 for s in test):
        raise RDError(f"Test set {test_dir} has no good images ({test_dir / 'good'} is missing or empty).",
                      "add anomaly-free test images: image AUROC needs both classes.")
    if not defect_types:
        raise RDError(f"Test set {test_dir} has no defect folders (only good).",
                      f"add defect images in {test_dir}/<defect type> with masks in {gt_root}/<defect type>.")
    test.sort(key=lambda s: s.rel)
    ignored.sort()
    if warn:
        warn_ignored(folder, ignored)
    return CategoryIndex(root, category, folder, train, test, defect_types, ignored)


def validate_category(root: str | os.PathLike, category: str) -> dict[str, Any]:
    """Check a category completely (structure + every file decoded) and return its manifest.

    Manifest keys: root, category, n_train, n_test_good, n_test_defect, n_test_per_type,
    defect_types, file_list_sha256, ignored_files.
    """
    index = scan_category(root, category)
    check_files(index)
    return manifest_of(index)


class MVTecDataset:
    """Map-style dataset (works with ``torch.utils.data.DataLoader``); item = dict(image, mask,
    label, defect_type, path). Decodes lazily per item; for training prefer :func:`load_split`,
    which decodes every file once. (No torch base class, so that importing this module -- and
    ``prepare-data`` -- does not import torch.)
    """

    def __init__(self, root: str | os.PathLike, category: str, split: str, image_size: int) -> None:
        self.image_size = image_size
        self.index = scan_category(root, category)
        self.samples = self.index.split(split)
        self.split = split

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        image, mask = load_sample(s, self.image_size)
        return {"image": image, "mask": mask, "label": s.label, "defect_type": s.defect_type, "path": str(s.path)}
