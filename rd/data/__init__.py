"""Data: the MVTec AD layout reader/validator and the embedded texture dataset.

``prepare_category`` is what ``python -m rd prepare-data`` calls: for ``textures`` it generates
(or reuses) the category and validates it, for ``mvtec`` it only validates; then it writes the
manifest atomically. On any problem it raises ``RDError`` and leaves no manifest behind (a stale
one from an earlier run at the same path is removed, so no later step trusts it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rd.data.mvtec import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    IgnoredFilesWarning,
    MVTecDataset,
    denormalize,
    load_split,
    scan_category,
    validate_category,
)
from rd.errors import RDError

DATASETS = ("textures", "mvtec")

__all__ = [
    "DATASETS", "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "IgnoredFilesWarning", "MVTecDataset",
    "denormalize", "load_split", "prepare_category", "scan_category", "validate_category",
]


def prepare_category(dataset: str, root: str | os.PathLike, category: str, seed: int = 0,
                     manifest_path: str | os.PathLike | None = None,
                     generate_options: dict[str, int] | None = None) -> dict[str, Any]:
    """Generate (textures) and/or validate (both) one category; return and optionally write its manifest.

    Manifest: dataset, root, category, n_train, n_test_good, n_test_defect, n_test_per_type,
    defect_types, file_list_sha256, ignored_files, seed (textures; null for mvtec), generated
    (bool), and for textures content_sha256 and generator_version.
    """
    try:
        manifest = _prepare(dataset, root, category, seed, generate_options or {})
    except RDError:
        if manifest_path is not None:
            try:
                Path(manifest_path).unlink(missing_ok=True)
            except OSError:
                pass
        raise
    if manifest_path is not None:
        from rd.io import write_json

        write_json(manifest_path, manifest)
    return manifest


def _prepare(dataset: str, root: str | os.PathLike, category: str, seed: int,
             generate_options: dict[str, int]) -> dict[str, Any]:
    if dataset not in DATASETS:
        raise RDError(f"Unknown dataset kind {dataset!r}.", f"use one of {', '.join(DATASETS)}.")
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
    manifest = validate_category(root, category)
    return {"dataset": dataset, **manifest, **extra}
