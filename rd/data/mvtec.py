"""MVTec AD layout: reader, validator and in-memory loader.

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
  category :class:`IgnoredFilesWarning`) that names them. They are not part of the data and
  do not enter ``file_list_sha256``.
* A file with an image extension (``.png .jpg .jpeg .bmp .tif .tiff .webp``, any case) that
  cannot be decoded is an **error**: it was meant to be data.
* A mask without its image (``ground_truth/<type>/x_mask.png`` but no ``test/<type>/x.*``) is
  ignored with a warning; an all-zero mask for a defect image gets a warning.

``file_list_sha256`` is the sha256 of the sorted category-relative POSIX paths (joined by
newlines) of every image and mask used; two runs with equal hashes saw the same file list.

Ordering is deterministic: items are sorted by their relative path.
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
SPLITS = ("train", "test")
_LAYOUT = ("expected the MVTec AD layout <category>/train/good, <category>/test/<good|defect>, "
           "<category>/ground_truth/<defect>/<name>_mask.png")


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
        if split not in SPLITS:
            raise RDError(f"Unknown split {split!r} for {self.folder}.", f"use one of {', '.join(SPLITS)}.")
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


def _unfollowable(path: str | os.PathLike, exc: OSError) -> RDError:
    return RDError(f"Cannot follow {path}: {exc.strerror} (a symbolic link that points to itself, in a "
                   "loop, or somewhere unreadable).", "fix or delete the link, or replace it by the file or folder.")


def _is(entry: os.DirEntry, kind: str) -> bool:
    """``entry.is_file()`` / ``is_dir()``, with a symlink loop as one clear error."""
    try:
        return entry.is_file() if kind == "file" else entry.is_dir()
    except OSError as exc:
        raise _unfollowable(entry.path, exc) from exc


def _list_images(folder: Path, ignored: list[str], base: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted); everything else goes to ``ignored``.

    Two images with one name but for the extension or its case (``0000.bmp`` beside
    ``0000.png``, a conversion left half done; ``000.png`` beside ``000.PNG``) are an error:
    masks are found by name, so both would share one mask and the set would count twice."""
    images = []
    with os.scandir(folder) as it:
        for entry in it:
            if _is(entry, "file") and _is_image_name(entry.name):
                images.append(Path(entry.path))
            else:
                rel = Path(entry.path).relative_to(base).as_posix()
                ignored.append(rel + ("/" if _is(entry, "dir") else ""))
    by_stem: dict[str, Path] = {}
    for p in sorted(images, key=lambda p: p.name):
        other = by_stem.setdefault(p.stem.lower(), p)
        if other is not p:
            raise RDError(f"Two images in {folder} have the same name but for the extension: {other.name} and "
                          f"{p.name} (masks and results are matched by name, so they would share one).",
                          "keep one of them (e.g. delete the originals of a half-finished conversion) and move "
                          "the other out of the dataset.")
    return sorted(images, key=lambda p: p.name)


def _subfolders(folder: Path, ignored: list[str], base: Path) -> list[str]:
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            if _is(entry, "dir") and not entry.name.startswith("."):
                names.append(entry.name)
            else:
                ignored.append(Path(entry.path).relative_to(base).as_posix())
    return sorted(names)


def _existing_categories(root: Path) -> str:
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        names = []
    return ", ".join(names) if names else "(none)"


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
                    raise _unfollowable(cand, exc) from exc
    return None


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
            raise _unfollowable(folder, exc) from exc
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
    train_imgs = _list_images(train_dir, ignored, folder)
    if not train_imgs:
        raise RDError(f"Empty train set: {train_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).",
                      f"put the anomaly-free training images in {train_dir}.")
    train = [Sample(p, p.relative_to(folder).as_posix(), 0, "good", None) for p in train_imgs]

    test: list[Sample] = []
    defect_types: list[str] = []
    gt_root = folder / "ground_truth"
    for kind in _subfolders(test_dir, ignored, folder):
        imgs = _list_images(test_dir / kind, ignored, folder)
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
            for m in _list_images(gt_dir, ignored, folder):
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


# --------------------------------------------------------------------------- decoding
# rd.data.decode.decode_file: the one decoder for validation, training and evaluation.


def _check_sizes(sample: Sample, image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
    """Array shapes (height, width, ...) of an image and its mask must agree."""
    (ih, iw), (mh, mw) = image_shape[:2], mask_shape[:2]
    if (ih, iw) != (mh, mw):
        raise RDError(f"Mask {sample.mask_path} is {mw}x{mh} but its image {sample.path} is "
                      f"{iw}x{ih} (width x height, after EXIF rotation).",
                      "masks must have the size of their image; fix or replace the mask.")


def validate_category(root: str | os.PathLike, category: str) -> dict[str, Any]:
    """Check a category completely (structure + every file decoded) and return its manifest.

    Manifest keys: root, category, n_train, n_test_good, n_test_defect, n_test_per_type,
    defect_types, file_list_sha256, ignored_files.
    """
    index = scan_category(root, category)
    check_files(index)
    return manifest_of(index)


def check_files(index: CategoryIndex) -> None:
    """Decode every image and mask of ``index`` in full and check each mask has its image's size."""
    empty_masks = []
    for s in index.train + index.validation + index.test:
        img = decode_file(s.path, "image", strict=True)
        if s.mask_path is not None:
            mask = decode_file(s.mask_path, "mask", strict=True)
            _check_sizes(s, img.shape, mask.shape)
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


# --------------------------------------------------------------------------- tensors
def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise RDError(f"image_size must be an integer >= 8, got {image_size!r}.", "set image_size to e.g. 128 or 256.")
    return image_size


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


def _load_sample(sample: Sample, size: int):
    """(image 3xSxS float32 normalised, mask 1xSxS bool) for one sample."""
    import torch
    import torch.nn.functional as F

    arr = np.array(decode_file(sample.path, "image"), dtype=np.uint8)  # a writable copy for torch
    img = _image_tensor(arr, size)
    if sample.mask_path is None:
        mask = torch.zeros(1, size, size, dtype=torch.bool)
    else:
        marr = decode_file(sample.mask_path, "mask")
        _check_sizes(sample, arr.shape, marr.shape)
        m = torch.from_numpy(np.ascontiguousarray(marr))[None, None].to(torch.uint8)
        if m.shape[-2:] != (size, size):
            m = F.interpolate(m, size=(size, size), mode="nearest-exact")
        mask = m[0].bool()
    return img, mask


def load_split(root: str | os.PathLike, category: str, split: str, image_size: int) -> dict[str, Any]:
    """Decode a whole split once into stacked tensors (keep it in memory across epochs).

    Returns ``images`` (N,3,S,S float32, ImageNet-normalised), ``masks`` (N,1,S,S bool),
    ``labels`` (N int64), ``defect_types`` (list[str]), ``paths`` (list[str]), ordered by
    relative path. Raises RDError for the same problems as :func:`validate_category`.
    """
    return load_samples(scan_category(root, category).split(split), image_size)


def load_samples(samples: list[Sample], image_size: int) -> dict[str, Any]:
    """Decode ``samples`` (one split of any reader's index) into the tensors of :func:`load_split`."""
    import torch

    size = _check_image_size(image_size)
    images = torch.empty(len(samples), 3, size, size, dtype=torch.float32)
    masks = torch.empty(len(samples), 1, size, size, dtype=torch.bool)
    for i, s in enumerate(samples):
        images[i], masks[i] = _load_sample(s, size)
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


class MVTecDataset:
    """Map-style dataset (works with ``torch.utils.data.DataLoader``); item = dict(image, mask,
    label, defect_type, path). Decodes lazily per item; for training prefer :func:`load_split`,
    which decodes every file once. (No torch base class, so that importing this module -- and
    ``prepare-data`` -- does not import torch.)
    """

    def __init__(self, root: str | os.PathLike, category: str, split: str, image_size: int) -> None:
        self.image_size = _check_image_size(image_size)
        self.index = scan_category(root, category)
        self.samples = self.index.split(split)
        self.split = split

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        image, mask = _load_sample(s, self.image_size)
        return {"image": image, "mask": mask, "label": s.label, "defect_type": s.defect_type, "path": str(s.path)}
