"""Small VisA, MVTec AD 2 and BTAD trees in each dataset's own layout (tests/test_datasets.py,
tests/test_holdout.py): written with PIL in the file formats and mask value conventions each
dataset ships (VisA masks hold small values 1..k, not 255)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

VISA_SIZE = (48, 32)       # width x height: not square, like VisA's ~1500x1000
AD2_SIZE = (40, 56)
BTAD_EXT = {"01": (".bmp", ".png"), "02": (".png", ".png"), "03": (".bmp", ".bmp")}   # (image, mask)
BTAD_SIZE = {"01": (40, 40), "02": (36, 36), "03": (40, 30)}


# --------------------------------------------------------------------------- tiny trees
def write_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[path.suffix.lower()]
    Image.fromarray(arr).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def write_mask(path: Path, size: tuple[int, int], values: tuple[int, ...]) -> Path:
    """One rectangle per value (e.g. VisA's 1, 2, 3), 0 elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    w, h = size
    for k, v in enumerate(values):
        arr[2 + 4 * k: 2 + 4 * k + h // 4, 3 + 5 * k: 3 + 5 * k + w // 4] = v
    Image.fromarray(arr, mode="L").save(path, format="BMP" if path.suffix == ".bmp" else "PNG")
    return path


def make_visa(root: Path, categories=("candle", "pcb1"), n_train=4, n_test_good=2, n_anomaly=2) -> Path:
    """VisA as shipped: <cat>/Data/{Images/{Normal,Anomaly},Masks/Anomaly} and split_csv/1cls.csv.
    One normal image per category is on disk but in no split row."""
    rows = []
    for c, cat in enumerate(categories):
        data = root / cat / "Data"
        for i in range(n_train + n_test_good + 1):
            rel = f"{cat}/Data/Images/Normal/{i:04d}.JPG"
            write_image(root / rel, VISA_SIZE, seed=100 * c + i)
            if i < n_train + n_test_good:
                rows.append([cat, "train" if i < n_train else "test", "normal", rel, ""])
        for j in range(n_anomaly):
            rel = f"{cat}/Data/Images/Anomaly/{j:03d}.JPG"
            write_image(root / rel, VISA_SIZE, seed=100 * c + 50 + j)
            write_mask(data / "Masks" / "Anomaly" / f"{j:03d}.png", VISA_SIZE, values=tuple(range(1, j + 2)))
            rows.append([cat, "test", "anomaly", rel, f"{cat}/Data/Masks/Anomaly/{j:03d}.png"])
    rows.sort(key=lambda r: (r[0], r[3][::-1]))     # test and train rows interleaved, as in 1cls.csv
    write_split(root, rows)
    return root


def write_split(root: Path, rows: list[list[str]]) -> None:
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "split", "label", "image", "mask"])
        w.writerows(rows)


def read_split(root: Path) -> list[list[str]]:
    with open(root / "split_csv" / "1cls.csv", newline="") as fh:
        return list(csv.reader(fh))[1:]


def make_mvtec_ad2(root: Path, categories=("can",), n_train=4, n_val=2, n_good=2, n_bad=2) -> Path:
    """MVTec AD 2 as shipped, private test sets (no labels) included."""
    for c, cat in enumerate(categories):
        folder = root / cat
        for i in range(n_train):
            write_image(folder / "train" / "good" / f"{i:03d}_regular.png", AD2_SIZE, seed=c * 100 + i)
        for i in range(n_val):
            write_image(folder / "validation" / "good" / f"{i:03d}_regular.png", AD2_SIZE, seed=c * 100 + 20 + i)
        for i in range(n_good):
            write_image(folder / "test_public" / "good" / f"{i:03d}_regular.png", AD2_SIZE, seed=c * 100 + 40 + i)
        for i in range(n_bad):
            write_image(folder / "test_public" / "bad" / f"{i:03d}_regular.png", AD2_SIZE, seed=c * 100 + 60 + i)
            write_mask(folder / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png", AD2_SIZE, (255,))
        write_image(folder / "test_private" / "000_regular.png", AD2_SIZE, seed=c * 100 + 80)
        write_image(folder / "test_private_mixed" / "000_mixed.png", AD2_SIZE, seed=c * 100 + 81)
    return root


def make_btad(root: Path, categories=("01", "02", "03"), n_train=4, n_ok=2, n_ko=2) -> Path:
    """BTAD as shipped: masks named like their images, extensions per product."""
    for c, cat in enumerate(categories):
        img_ext, mask_ext = BTAD_EXT[cat]
        size = BTAD_SIZE[cat]
        for i in range(n_train):
            write_image(root / cat / "train" / "ok" / f"{i:04d}{img_ext}", size, seed=c * 100 + i)
        for i in range(n_ok):
            write_image(root / cat / "test" / "ok" / f"{i:04d}{img_ext}", size, seed=c * 100 + 40 + i)
        for i in range(n_ko):
            write_image(root / cat / "test" / "ko" / f"{i:04d}{img_ext}", size, seed=c * 100 + 60 + i)
            write_mask(root / cat / "ground_truth" / "ko" / f"{i:04d}{mask_ext}", size, (255,))
    return root
