"""Pieces shared by the VisA, MVTec AD 2 and BTAD readers.

A reader only turns its dataset's own layout into a :class:`~rd.data.mvtec.CategoryIndex` (a
list of :class:`~rd.data.mvtec.Sample` per split, no pixel read). Everything after the listing
is shared with the MVTec AD reader, so every dataset is checked, decoded, resized and hashed the
same way: :func:`finish_index` (the checks every index must pass), ``mvtec.check_files`` (every
file decoded, mask sizes), ``mvtec.load_samples`` (tensors) and :func:`manifest` (counts, the
file-list hash and a content hash).

Datasets without defect types (VisA, MVTec AD 2, BTAD) label every anomalous image
``"anomaly"``; normal images are ``"good"`` as in MVTec AD.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rd.data.mvtec import (
    IMAGE_EXTENSIONS,
    CategoryIndex,
    Sample,
    _list_images,
    category_folder,
    content_sha256,
    manifest_of,
    warn_ignored,
)
from rd.errors import RDError

ANOMALY = "anomaly"
# Mask extensions in the order they are looked for (the datasets ship PNG, BTAD's 03 ships BMP).
MASK_EXTENSIONS = (".png", ".bmp", *sorted(IMAGE_EXTENSIONS - {".png", ".bmp"}))


def require_dir(path: Path, layout: str, fix: str) -> Path:
    """``path`` if it is a folder, else one RDError saying which layout was expected."""
    if not path.is_dir():
        raise RDError(f"Wrong layout: {path} is missing ({layout}).", fix)
    return path


def find_by_stem(folder: Path, stem: str) -> Path | None:
    """``folder/<stem><ext>`` for the first mask extension that exists (either case), else None."""
    for ext in MASK_EXTENSIONS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def finish_index(root: Path, category: str, folder: Path, train: list[Sample], test: list[Sample],
                 ignored: list[str], *, train_where: Path | str, test_where: Path | str,
                 warn: bool = True) -> CategoryIndex:
    """Check what every split must hold, sort it, warn about ignored files; return the index.

    ``train_where`` / ``test_where`` name the folder (or split-file rows) the user must fix.
    """
    if not train:
        raise RDError(f"Empty train set: no images in {train_where}.",
                      f"add anomaly-free training images ({', '.join(sorted(IMAGE_EXTENSIONS))}) to {train_where}.")
    if not any(s.label == 0 for s in test):
        raise RDError(f"Test set {test_where} has no normal images.",
                      "add anomaly-free test images: image AUROC needs both classes.")
    if not any(s.label == 1 for s in test):
        raise RDError(f"Test set {test_where} has no anomalous images.",
                      "add anomalous test images with their masks: image AUROC needs both classes.")
    train = sorted(train, key=lambda s: s.rel)
    test = sorted(test, key=lambda s: s.rel)
    defect_types = sorted({s.defect_type for s in test if s.label == 1})
    ignored = sorted(ignored)
    if warn:
        warn_ignored(folder, ignored)
    return CategoryIndex(root, category, folder, train, test, defect_types, ignored)


def scan_folders(root: str | os.PathLike, category: str, *, train: str, good: str, bad: str, masks: str,
                 mask_suffix: str, layout: str, warn: bool = True) -> CategoryIndex:
    """List a folder-per-class layout (MVTec AD 2, BTAD): category-relative folder names in.

    ``train`` holds the normal training images, ``good``/``bad`` the normal/anomalous test
    images, ``masks`` the mask of every ``bad`` image, named ``<image stem><mask_suffix>.<ext>``.
    Other folders next to ``good`` and ``bad`` (e.g. unlabelled test sets) are never read.
    """
    root, folder = category_folder(root, category)
    train_dir = require_dir(folder / train, layout, f"put the anomaly-free training images in {folder / train}.")
    good_dir = require_dir(folder / good, layout, f"put the anomaly-free test images in {folder / good}.")
    bad_dir = require_dir(folder / bad, layout, f"put the anomalous test images in {folder / bad}.")
    mask_dir = folder / masks
    ignored: list[str] = []

    def rel(p: Path) -> str:
        return p.relative_to(folder).as_posix()

    train_samples = [Sample(p, rel(p), 0, "good", None) for p in _list_images(train_dir, ignored, folder)]
    test = [Sample(p, rel(p), 0, "good", None) for p in _list_images(good_dir, ignored, folder)]
    bad_images = _list_images(bad_dir, ignored, folder)
    for p in bad_images:
        mask = find_by_stem(mask_dir, p.stem + mask_suffix) if mask_dir.is_dir() else None
        if mask is None:
            raise RDError(f"Anomalous image {p} has no mask: expected {mask_dir / (p.stem + mask_suffix + '.png')}.",
                          "add the mask (0 = normal, > 0 = defect, same size as the image) "
                          f"or move the image out of {bad_dir}.")
        test.append(Sample(p, rel(p), 1, ANOMALY, mask))
    if mask_dir.is_dir():   # masks without an image: harmless, but say so
        wanted = {p.stem + mask_suffix for p in bad_images}
        ignored += [rel(m) + " (mask without image)" for m in _list_images(mask_dir, ignored, folder)
                    if m.stem not in wanted]
    return finish_index(root, category, folder, train_samples, test, ignored,
                        train_where=train_dir, test_where=f"{good_dir} + {bad_dir}", warn=warn)


def manifest(index: CategoryIndex, dataset: str, **extra: Any) -> dict[str, Any]:
    """The MVTec manifest plus ``content_sha256`` (the bytes of every file used) and ``extra``."""
    return {**manifest_of(index), "content_sha256": content_sha256(index.folder, index.files()),
            "dataset": dataset, **extra}
