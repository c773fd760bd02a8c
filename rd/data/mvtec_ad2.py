"""MVTec AD 2 reader (Heckler-Kram et al., "The MVTec AD 2 Dataset: Advanced Scenarios for
Unsupervised Anomaly Detection", arXiv:2503.21622, 2025).

Layout, exactly as MVTec ships it (one folder per scenario)::

    <root>/<category>/train/good/*.png                                 training (normal only)
    <root>/<category>/validation/good/*.png                            normal, for model selection
    <root>/<category>/test_public/good/*.png                           test, normal
    <root>/<category>/test_public/bad/*.png                            test, anomalous
    <root>/<category>/test_public/ground_truth/bad/<name>_mask.png     mask of test_public/bad/<name>.png
    <root>/<category>/test_private/, test_private_mixed/               no labels: never read

Checked against (2026-12-01): the dataset class MVTec publishes with the data
(``mvtec_ad_2_public_offline.py``: splits train, validation, test_public, test_private,
test_private_mixed; images ``<split>/{good,bad}/NNN*.png``; the mask of
``test_public/bad/<name>.png`` is ``test_public/ground_truth/bad/<name>_mask.png``, 255 =
anomalous, 0 = normal; ground truth only for test_public) and anomalib's MVTecAD2 datamodule
documentation (v2.1.0: the public test set has masks, the two private test sets have none and
are scored on the evaluation server https://benchmark.mvtec.com/).

Protocol here: train on ``train/good``, evaluate on ``test_public`` (the only labelled test set).
``validation/good`` (counted in the manifest as ``n_validation``) is the run's held-out good set
(``rd.data.holdout``: source ``validation_split``) whenever ``validation_fraction`` > 0: the
predict threshold and a setting's ``lr_grid`` choice are made on it, and train/good is trained on
whole. Without it (or at ``validation_fraction`` 0) the generic rule applies. Anomalous images have no defect type in this dataset: they are
``"anomaly"``. Masks: any non-zero pixel is anomalous. Images are large and not square (e.g.
several megapixels); they are resized to the run's square ``image_size`` like every dataset here,
which shrinks the many small defects of this dataset -- use a larger ``image_size`` for them.

Licence: CC BY-NC-SA 4.0 (non-commercial use only).
"""

from __future__ import annotations

import os
from typing import Any

from rd.data import layout
from rd.data.layout import CategoryIndex, Sample, list_images

NAME = "mvtec_ad2"
CATEGORIES: tuple[str, ...] = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
SPLIT_RULE = ("folders: train/good for training, validation/good held out (threshold, lr selection), "
              "test_public/{good,bad} for testing")
_LAYOUT = ("expected the MVTec AD 2 layout <category>/train/good, <category>/test_public/{good,bad}, "
           "<category>/test_public/ground_truth/bad/<name>_mask.png")


def scan_category(root: str | os.PathLike, category: str, *, warn: bool = True) -> CategoryIndex:
    """List one MVTec AD 2 scenario (no decoding); RDError naming the path on any problem."""
    index = layout.scan_folders(root, category, train="train/good", good="test_public/good", bad="test_public/bad",
                                masks="test_public/ground_truth/bad", mask_suffix="_mask", layout=_LAYOUT,
                                warn=warn)
    val_dir = index.folder / "validation" / "good"
    if val_dir.is_dir():
        index.validation = [Sample(p, p.relative_to(index.folder).as_posix(), 0, "good", None)
                            for p in list_images(val_dir, index.ignored, index.folder)]
    return index


def manifest_extra(index: CategoryIndex) -> dict[str, Any]:
    """What the MVTec manifest lacks for this dataset: the split rule and the validation count."""
    return {"split_rule": SPLIT_RULE, "test_set": "test_public", "n_validation": len(index.validation)}
