"""BTAD reader: the beanTech Anomaly Detection dataset (Mishra et al., "VT-ADL: A Vision
Transformer Network for Image Anomaly Detection and Localization", IEEE ISIE 2021).

Layout, exactly as the authors ship it (``btad.zip``, folder ``BTech_Dataset_transformed``)::

    <root>/<category>/train/ok/*            training (normal only)
    <root>/<category>/test/ok/*             test, normal
    <root>/<category>/test/ko/*             test, anomalous
    <root>/<category>/ground_truth/ko/*     mask of test/ko/<name>.<ext>, named <name>.png or <name>.bmp

with categories ``01``, ``02`` and ``03``. Masks carry the image's name (no ``_mask`` suffix);
the extensions differ per product: 01 has BMP images and PNG masks, 02 PNG images and PNG masks,
03 BMP images and BMP masks. Checked against (2026-12-01) anomalib's BTech dataset and
datamodule (the extension table above is theirs; their downloader converts every BMP to PNG,
this reader reads both as shipped) and the authors' README
(https://github.com/pankajmishra000/VT-ADL: products of 1600x1600, 600x600 and 800x600 pixels).

Anomalous images have no defect type here: they are ``"anomaly"``. Masks: any non-zero pixel is
anomalous. Images are resized to the run's square ``image_size`` (03 is not square).

Licence: CC BY-SA 4.0 (stated in the authors' README).
"""

from __future__ import annotations

import os
from typing import Any

from rd.data import layout
from rd.data.layout import CategoryIndex

NAME = "btad"
CATEGORIES: tuple[str, ...] = ("01", "02", "03")
SPLIT_RULE = "folders: train/ok for training, test/{ok,ko} for testing"
_LAYOUT = ("expected the BTAD layout <category>/train/ok, <category>/test/{ok,ko}, "
           "<category>/ground_truth/ko/<name>.png|.bmp")


def scan_category(root: str | os.PathLike, category: str, *, warn: bool = True) -> CategoryIndex:
    """List one BTAD product (no decoding); RDError naming the path on any problem."""
    return layout.scan_folders(root, category, train="train/ok", good="test/ok", bad="test/ko",
                               masks="ground_truth/ko", mask_suffix="", layout=_LAYOUT, warn=warn)


def manifest_extra(index: CategoryIndex) -> dict[str, Any]:
    """What the MVTec manifest lacks for this dataset: the split rule."""
    return {"split_rule": SPLIT_RULE}
