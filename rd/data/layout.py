"""The records and tensors every dataset reader shares (MVTec AD, VisA, MVTec AD 2, BTAD).

A reader only turns its dataset's own layout into a :class:`CategoryIndex` (a list of
:class:`Sample` per split, no pixel read). Everything after the listing is shared, so every
dataset is checked, decoded, resized and hashed the same way: :func:`finish_index` (the checks
every index must pass), :func:`check_files` (every file decoded, mask sizes), :func:`load_samples`
(tensors) and :func:`manifest` (counts, the file-list hash and a content hash).

``file_list_sha256`` is the sha256 of the sorted category-relative POSIX paths (joined by
newlines) of every image and mask used; two runs with equal hashes saw the same file list.

Datasets without defect types (VisA, MVTec AD 2, BTAD) label every anomalous image
``"anomaly"``; normal images are ``"good"`` as in MVTec AD.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rd.data.decode import decode_file
from rd.errors import RDError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
INDEX_SPLITS = ("train", "test")
ANOMALY = "anomaly"
# Mask extensions in the order they are looked for (the datasets ship PNG, BTAD's 03 ships BMP).
MASK_EXTENSIONS = (".png", ".bmp", *sorted(IMAGE_EXTENSIONS - {".png", ".bmp"}))


class IgnoredFilesWarning(UserWarning):
    """Files in the dataset that are not images and were skipped."""


@dataclass(frozen=True)
class Sample:
    """One image of a split: where it is and what it is."""

    path: Path
    rel: str                 # category-relative POSIX path, e.g. "test/crack/000.png"
    label: int               # 0 good, 1 defect
    defect_type: str         # "good" for good images
    mask_path: Path | None   # None for good images


@dataclass
class CategoryIndex:
    """The file listing of one category (no pixel was read to build it)."""

    root: Path
    category: str
    folder: Path
    train: list[Sample]
    test: list[Sample]
    defect_types: list[str]
    ignored: list[str] = field(default_factory=list)
    # good images the dataset ships for validation (MVTec AD 2 validation/good; empty elsewhere)
    validation: list[Sample] = field(default_factory=list)

    def files(self) -> list[str]:
        """Sorted category-relative paths of every image and mask used."""
        rels = [s.rel for s in self.train + self.validation + self.test]
        rels += [s.mask_path.relative_to(self.folder).as_posix() for s in self.test if s.mask_path]
        return sorted(rels)

    def split(self, split: str) -> list[Sample]:
        if split not in INDEX_SPLITS:
            raise RDError(f"Unknown split {split!r} for {self.folder}.", f"use one of {', '.join(INDEX_SPLITS)}.")
        return self.train if split == "train" else self.test


def file_list_sha256(rel_paths: list[str]) -> str:
    """sha256 of the sorted relative paths, one per line."""
    # surrogateescape: a file name that is not UTF-8 (Latin-1) hashes as its bytes on disk
    return hashlib.sha256("\n".join(sorted(rel_paths)).encode("utf-8", "surrogateescape")).hexdigest()


def content_sha256(folder: str | os.PathLike, rel_paths: list[str]) -> str:
    """sha256 over (relative path, sha256 of the file bytes) of the sorted files."""
    folder = Path(folder)
    outer = hashlib.sha256()
    for rel in sorted(rel_paths):
        outer.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        outer.update(hashlib.sha256((folder / rel).read_bytes()).digest())
    return outer.hexdigest()


# --------------------------------------------------------------------------- listing
def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def unfollowable(path: str | os.PathLike, exc: OSError) -> RDError:
    return RDError(f"Cannot follow {path}: {exc.strerror} (a symbolic link that points to itself, in a "
                   "loop, or somewhere unreadable).", "fix or delete the link, or replace it by the file or folder.")


def is_kind(entry: os.DirEntry, kind: str) -> bool:
    """``entry.is_file()`` / ``is_dir()``, with a symlink loop as one clear error."""
    try:
        return entry.is_file() if kind == "file" else entry.is_dir()
    except OSError as exc:
        raise unfollowable(entry.path, exc) from exc


def list_images(folder: Path, ignored: list[str], base: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted); everything else goes to ``ignored``.

    Two images with one name but for the extension or its case (``0000.bmp`` beside
    ``0000.png``, a conversion left half done; ``000.png`` beside ``000.PNG``) are an error:
    masks are found by name, so both would share one mask and the set would count twice."""
    images = []
    with os.scandir(folder) as it:
        for entry in it:
            if is_kind(entry, "file") and _is_image_name(entry.name):
                images.append(Path(entry.path))
            else:
                rel = Path(entry.path).relative_to(base).as_posix()
                ignored.append(rel + ("/" if is_kind(entry, "dir") else ""))
    by_stem: dict[str, Path] = {}
    for p in sorted(images, key=lambda p: p.name):
        other = by_stem.setdefault(p.stem.lower(), p)
        if other is not p:
            raise RDError(f"Two images in {folder} have the same name but for the extension: {other.name} and "
                          f"{p.name} (masks and results are matched by name, so they would share one).",
                          "keep one of them (e.g. delete the originals of a half-finished conversion) and move "
                          "the other out of the dataset.")
    return sorted(images, key=lambda p: p.name)


def _existing_categories(root: Path) -> str:
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        names = []
    return ", ".join(names) if names else "(none)"


def category_folder(root: str | os.PathLike, category: str) -> tuple[Path, Path]:
    """(root, root/category) once both exist as folders; RDError naming the missing one otherwise."""
    root = Path(root)
    if not root.exists():
        raise RDError(f"Dataset root {root} does not exist.",
                      "check --root / the data root in the config, or generate the embedded dataset "
                      "with `python -m rd prepare-data --dataset textures`.")
    if not root.is_dir():
        raise RDError(f"Dataset root {root} is not a folder.", "point the data root at the folder holding the categories.")
    folder = root / category
    if folder.is_symlink() and not folder.exists():
        try:
            folder.stat()
        except OSError as exc:
            raise unfollowable(folder, exc) from exc
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise RDError(f"Category folder {folder} {what}; categories found in {root}: {_existing_categories(root)}.",
                      "check the category name (case matters) or the data root.")
    return root, folder


def warn_ignored(folder: Path, ignored: list[str]) -> None:
    """One IgnoredFilesWarning naming (up to ten of) the skipped files."""
    if ignored:
        shown = ", ".join(str(folder / r) for r in ignored[:10])
        more = f" and {len(ignored) - 10} more" if len(ignored) > 10 else ""
        warnings.warn(f"Ignored {len(ignored)} non-image file(s) in {folder}: {shown}{more}.",
                      IgnoredFilesWarning, stacklevel=3)


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

    train_samples = [Sample(p, rel(p), 0, "good", None) for p in list_images(train_dir, ignored, folder)]
    test = [Sample(p, rel(p), 0, "good", None) for p in list_images(good_dir, ignored, folder)]
    bad_images = list_images(bad_dir, ignored, folder)
    for p in bad_images:
        mask = find_by_stem(mask_dir, p.stem + mask_suffix) if mask_dir.is_dir() else None
        if mask is None:
            raise RDError(f"Anomalous image {p} has no mask: expected {mask_dir / (p.stem + mask_suffix + '.png')}.",
                          "add the mask (0 = normal, > 0 = defect, same size as the image) "
                          f"or move the image out of {bad_dir}.")
        test.append(Sample(p, rel(p), 1, ANOMALY, mask))
    if mask_dir.is_dir():   # masks without an image: harmless, but say so
        wanted = {p.stem + mask_suffix for p in bad_images}
        ignored += [rel(m) + " (mask without image)" for m in list_images(mask_dir, ignored, folder)
                    if m.stem not in wanted]
    return finish_index(root, category, folder, train_samples, test, ignored,
                        train_where=train_dir, test_where=f"{good_dir} + {bad_dir}", warn=warn)


# --------------------------------------------------------------------------- decoding
def check_sizes(sample: Sample, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
    """Array shapes (height, width, ...) of an image and its mask must agree."""
    (ih, iw), (mh, mw) = image_shape[:2], mask_shape[:2]
    if (ih, iw) != (mh, mw):
        raise RDError(f"Mask {sample.mask_path} is {mw}x{mh} but its image {sample.path} is "
                      f"{iw}x{ih} (width x height, after EXIF rotation).",
                      "masks must have the size of their image; fix or replace the mask.")


def check_files(index: CategoryIndex) -> None:
    """Decode every image and mask of ``index`` in full and check each mask has its image's size."""
    empty_masks = []
    for s in index.train + index.validation + index.test:
        img = decode_file(s.path, "image", strict=True)
        if s.mask_path is not None:
            mask = decode_file(s.mask_path, "mask", strict=True)
            check_sizes(s, img.shape, mask.shape)
            if not mask.any():
                empty_masks.append(str(s.mask_path))
    if empty_masks:
        warnings.warn(f"{len(empty_masks)} defect mask(s) are all zero (no defect pixel): "
                      f"{', '.join(empty_masks[:5])}{' ...' if len(empty_masks) > 5 else ''}.", stacklevel=3)


def manifest_of(index: CategoryIndex) -> dict[str, Any]:
    per_type = {t: sum(1 for s in index.test if s.defect_type == t) for t in index.defect_types}
    return {
        "root": str(index.root),
        "category": index.category,
        "n_train": len(index.train),
        "n_test_good": sum(1 for s in index.test if s.label == 0),
        "n_test_defect": sum(per_type.values()),
        "n_test_per_type": per_type,
        "defect_types": list(index.defect_types),
        "file_list_sha256": file_list_sha256(index.files()),
        "ignored_files": list(index.ignored),
    }


def manifest(index: CategoryIndex, dataset: str, **extra: Any) -> dict[str, Any]:
    """The MVTec manifest plus ``content_sha256`` (the bytes of every file used) and ``extra``."""
    return {**manifest_of(index), "content_sha256": content_sha256(index.folder, index.files()),
            "dataset": dataset, **extra}


# --------------------------------------------------------------------------- tensors
def _image_tensor(arr: np.ndarray, size: int):
    """A decoded HxWx3 uint8 image as the network sees it: 3xSxS float32, ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((img - mean) / std)[0].contiguous()


def load_image(path: str | os.PathLike, size: int):
    """One image file exactly as training and evaluation load it (decode, resize, normalise)."""
    return _image_tensor(np.array(decode_file(Path(path), "image"), dtype=np.uint8), size)


def load_sample(sample: Sample, size: int):
    """(image 3xSxS float32 normalised, mask 1xSxS bool) for one sample."""
    import torch
    import torch.nn.functional as F

    arr = np.array(decode_file(sample.path, "image"), dtype=np.uint8)  # a writable copy for torch
    img = _image_tensor(arr, size)
    if sample.mask_path is None:
        mask = torch.zeros(1, size, size, dtype=torch.bool)
    else:
        marr = decode_file(sample.mask_path, "mask")
        check_sizes(sample, arr.shape, marr.shape)
        m = torch.from_numpy(np.ascontiguousarray(marr))[None, None].to(torch.uint8)
        if m.shape[-2:] != (size, size):
            m = F.interpolate(m, size=(size, size), mode="nearest-exact")
        mask = m[0].bool()
    return img, mask


def load_samples(samples: list[Sample], image_size: int) -> dict[str, Any]:
    """Decode ``samples`` (one split of any reader's index) into the tensors of :func:`load_split`."""
    import torch

    size = image_size   # checked once where it enters (rd.params' rule: CLI, config, model.pt)
    images = torch.empty(len(samples), 3, size, size, dtype=torch.float32)
    masks = torch.empty(len(samples), 1, size, size, dtype=torch.bool)
    for i, s in enumerate(samples):
        images[i], masks[i] = load_sample(s, size)
    return {
        "images": images,
        "masks": masks,
        "labels": torch.tensor([s.label for s in samples], dtype=torch.int64),
        "defect_types": [s.defect_type for s in samples],
        "paths": [str(s.path) for s in samples],
    }


def denormalize(images) -> np.ndarray:
    """ImageNet-normalised (N,3,H,W) or (3,H,W) tensor/array -> uint8 (N,H,W,3) or (H,W,3)."""
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)
    out = np.clip((arr * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -3, -1)
