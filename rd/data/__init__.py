"""Data: one reader per dataset layout, and the embedded texture dataset.

Readers (``dataset`` names as in the config's ``dataset.name``):

* ``mvtec`` (and ``textures``, which is generated in that layout): :mod:`rd.data.mvtec`;
* ``visa``: :mod:`rd.data.visa` (the split file ``split_csv/1cls.csv`` decides train/test);
* ``mvtec_ad2``: :mod:`rd.data.mvtec_ad2` (test on ``test_public``);
* ``btad``: :mod:`rd.data.btad`.

Each reader lists a category into the same records (image, mask, label, defect type or
``anomaly``, path); decoding, size checks, tensors and the manifest are shared
(:mod:`rd.data.layout`). ``prepare_category`` is what ``python -m rd prepare-data`` calls: for
``textures`` it generates (or reuses) the category and validates it, for the others it only
validates; then it writes the manifest atomically. On any problem it raises ``RDError`` and
leaves no manifest behind (a stale one from an earlier run at the same path is removed, so no
later step trusts it).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from rd.data import btad, layout, mvtec, mvtec_ad2, visa
from rd.data.holdout import GoodSplit, split_good
from rd.data.layout import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CategoryIndex,
    IgnoredFilesWarning,
    check_files,
    denormalize,
    load_samples,
)
from rd.data.mvtec import MVTecDataset, scan_category, validate_category
from rd.errors import RDError
from rd.params import DATASETS

# The official categories of each real dataset (mvtec: any folder in the MVTec AD layout).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "visa": visa.CATEGORIES, "mvtec_ad2": mvtec_ad2.CATEGORIES, "btad": btad.CATEGORIES,
}
_READERS: dict[str, ModuleType] = {"visa": visa, "mvtec_ad2": mvtec_ad2, "btad": btad}

__all__ = [
    "CATEGORIES", "DATASETS", "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "GoodSplit",
    "IgnoredFilesWarning", "MVTecDataset", "SPLITS", "denormalize", "good_split", "load_split", "prepare_category",
    "scan", "scan_category", "validate", "validate_category",
]


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise RDError(f"Unknown dataset kind {dataset!r}.", f"use one of {', '.join(DATASETS)}.")
    return dataset


def scan(dataset: str, root: str | os.PathLike, category: str, *, warn: bool = True) -> CategoryIndex:
    """List one category with its dataset's reader (no pixel read); RDError on any layout problem."""
    reader = _READERS.get(_check_dataset(dataset), mvtec)
    return reader.scan_category(root, category, warn=warn)


def validate(dataset: str, root: str | os.PathLike, category: str) -> dict[str, Any]:
    """Check one category completely (layout, every file decoded, mask sizes); return its manifest."""
    if _check_dataset(dataset) not in _READERS:
        return validate_category(root, category)
    reader = _READERS[dataset]
    index = reader.scan_category(root, category)
    check_files(index)
    return layout.manifest(index, dataset, **reader.manifest_extra(index))


#: What :func:`load_split` can load: the good images training sees, the held-out good images, the test set.
SPLITS = ("train", "held_out", "test")


def good_split(dataset: str, root: str | os.PathLike, category: str, validation_fraction: float,
               seed: int = 0) -> GoodSplit:
    """The category's good training images split into training and held-out (rd.data.holdout)."""
    return split_good(scan(dataset, root, category, warn=False), validation_fraction, seed)


def load_split(root: str | os.PathLike, category: str, split: str, image_size: int,
               dataset: str = "mvtec", *, validation_fraction: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Decode one split of a category into stacked tensors, with the dataset's reader.

    ``train``: the good images training sees (all of train/good at ``validation_fraction`` 0,
    else without the held-out ones); ``held_out``: the held-out good images (``seed`` is the
    dataset seed that picks them; empty at fraction 0); ``test``: the test set. Output as
    :func:`rd.data.layout.load_samples`: ``images`` (N,3,S,S float32, ImageNet-normalised),
    ``masks`` (N,1,S,S bool), ``labels``, ``defect_types``, ``paths``; ordered by relative path.
    """
    if split not in SPLITS:
        raise RDError(f"Unknown split {split!r}.", f"use one of {', '.join(SPLITS)}.")
    index = scan(dataset, root, category)
    if split == "test":
        return load_samples(index.test, image_size)
    part = split_good(index, validation_fraction, seed)
    return load_samples(part.train if split == "train" else part.held_out, image_size)


def prepare_category(dataset: str, root: str | os.PathLike, category: str, seed: int = 0,
                     manifest_path: str | os.PathLike | None = None,
                     generate_options: dict[str, int] | None = None,
                     validation_fraction: float = 0.0) -> dict[str, Any]:
    """Generate (textures) and/or validate (both) one category; return and optionally write its manifest.

    Manifest: dataset, root, category, n_train (all of train/good), n_test_good, n_test_defect,
    n_test_per_type, defect_types, file_list_sha256, ignored_files, seed (textures; null
    otherwise), generated (bool), ``held_out`` (the held-out good images at
    ``validation_fraction``, picked with ``seed``: source, validation_fraction, seed, n_images,
    n_training, sha256 of the list, files; see rd.data.holdout), for textures content_sha256 and
    generator_version, for visa / mvtec_ad2 / btad content_sha256 and split_rule (visa also
    split_sha256, mvtec_ad2 also test_set, n_validation).
    """
    try:
        manifest = _prepare(dataset, root, category, seed, generate_options or {})
        manifest["held_out"] = good_split(dataset, root, category, validation_fraction, seed).record()
    except RDError:
        if manifest_path is not None:
            try:
                Path(manifest_path).unlink(missing_ok=True)
            except OSError:
                pass
        raise
    if manifest_path is not None:
        from rd.files import write_json

        write_json(manifest_path, manifest)
    return manifest


def _prepare(dataset: str, root: str | os.PathLike, category: str, seed: int,
             generate_options: dict[str, int]) -> dict[str, Any]:
    _check_dataset(dataset)
    if generate_options and dataset != "textures":
        raise RDError("Generation options were given for a dataset that is only validated.",
                      "drop the dataset.generate settings, or use the textures dataset.")
    extra: dict[str, Any] = {"seed": None, "generated": False}
    if dataset == "textures":
        from rd.data import textures

        folder = textures.generate(root, category, seed=seed, **generate_options)
        marker = textures.read_marker(folder) or {}
        extra = {"seed": int(seed), "generated": True, "content_sha256": marker.get("content_sha256"),
                 "generator_version": marker.get("generator_version")}
    manifest = validate(dataset, root, category)
    return {"dataset": dataset, **manifest, **extra}
