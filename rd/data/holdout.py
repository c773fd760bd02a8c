"""Held-out good images: a fixed part of the good training images that training never sees.

They give the two choices that must not be made on training images or on test labels: the
decision threshold ``python -m rd predict`` uses by default (the 0.99 quantile of their
scores, ``rd.use.thresholds``) and the learning rate of a setting with ``lr_grid``
(``rd.lr_select``).

Which images: each good training image is ranked by the sha256 of (dataset seed, category,
its category-relative path) and the ``k`` lowest are held out, ``k`` from
:func:`rd.params.held_out_count`. The choice depends on the file list, the seed and the
category only, so it is the same for every arm, every training seed and every library
version, and adding a file moves no other file between the two parts.

A dataset that ships its own validation images (MVTec AD 2 ``validation/good``) uses those
instead and trains on all of train/good (``source`` ``validation_split``); ``fraction`` 0
switches held-out images off for every dataset (the paper's split: train on all of
train/good; the threshold then comes from training images, ``source`` ``training``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rd.data.layout import CategoryIndex, Sample, file_list_sha256
from rd.params import check, held_out_count

HELD_OUT = "held_out"                  # part of train/good, never trained on
VALIDATION_SPLIT = "validation_split"  # the dataset's own validation images
TRAINING = "training"                  # none held out: thresholds come from the training images


def _rank(seed: int, category: str, rel: str) -> str:
    return hashlib.sha256(f"{seed}\0{category}\0{rel}".encode("utf-8", "surrogateescape")).hexdigest()  # a non-UTF-8 name: its bytes


@dataclass(frozen=True)
class GoodSplit:
    """The good training images of one category, split into what training sees and what it does not."""

    train: list[Sample]
    held_out: list[Sample]
    source: str        # held_out | validation_split | training (nothing held out)
    fraction: float
    seed: int

    @property
    def held_out_files(self) -> list[str]:
        return [s.rel for s in self.held_out]

    def record(self) -> dict[str, Any]:
        """The manifest's ``held_out`` block (also summarised in train.json)."""
        return {"source": self.source, "validation_fraction": self.fraction, "seed": self.seed,
                "n_images": len(self.held_out), "n_training": len(self.train),
                "sha256": file_list_sha256(self.held_out_files), "files": self.held_out_files}


def split_good(index: CategoryIndex, fraction: float, seed: int = 0) -> GoodSplit:
    """The held-out good images of ``index`` at ``fraction`` (see the module docstring)."""
    fraction = check("validation_fraction", fraction)
    if fraction == 0:
        return GoodSplit(list(index.train), [], TRAINING, fraction, int(seed))
    if index.validation:
        return GoodSplit(list(index.train), list(index.validation), VALIDATION_SPLIT, fraction, int(seed))
    k = held_out_count(len(index.train), fraction)
    ranked = sorted(index.train, key=lambda s: _rank(int(seed), index.category, s.rel))
    held = {s.rel for s in ranked[:k]}
    return GoodSplit([s for s in index.train if s.rel not in held], [s for s in index.train if s.rel in held],
                     HELD_OUT, fraction, int(seed))
