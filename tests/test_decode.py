"""Images and masks read as stored: one decoder (rd.data.decode.decode_file) for validation,
training and evaluation, with bit depth, palettes, alpha and EXIF orientation handled explicitly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rd.data import load_split, prepare_category, validate_category
from rd.data.decode import decode_file
from rd.errors import RDError

H, W = 6, 10
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = RGB[..., 0]


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    Image.fromarray(array).save(path, **kw)
    return path


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    """PIL's mode conversion clips 16-bit values to 255 (a solid white image); we scale."""
    g16 = (np.arange(H * W).reshape(H, W) * 1000).astype(np.uint16)
    path = _save(tmp_path / "g16.png", g16)
    assert Image.open(path).mode.startswith("I;16")
    out = decode_file(path)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - g16 // 257).max() <= 1
    assert out.min() < 50 and len(np.unique(out)) > 20   # not solid white


def test_16_bit_mask_defect_is_any_nonzero(tmp_path):
    m = np.zeros((H, W), np.uint16)
    m[1, 2] = 1                   # 1/65535: a defect, though it rounds to 0 in 8 bits
    assert decode_file(_save(tmp_path / "m16.png", m), "mask").sum() == 1


@pytest.mark.parametrize("mode", ["P", "L", "1", "LA", "RGBA", "CMYK"])
def test_unusual_but_valid_images_convert(mode, tmp_path):
    im = Image.fromarray(RGB)
    im = im.convert(mode) if mode != "LA" else Image.fromarray(GRAY).convert("LA")
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    im.save(path)
    out = decode_file(path)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    if mode in ("P", "RGBA"):
        np.testing.assert_allclose(out, np.asarray(im.convert("RGB")), atol=0)
    if mode == "RGBA":
        np.testing.assert_array_equal(out, RGB)
    if mode == "1":
        assert set(np.unique(out)) <= {0, 255}


def test_float_tiff_in_0_1_is_scaled_other_ranges_refused(tmp_path):
    ok = _save(tmp_path / "f.tif", (GRAY / 255).astype(np.float32))
    np.testing.assert_array_equal(decode_file(ok)[..., 0], GRAY)
    bad = _save(tmp_path / "f255.tif", GRAY.astype(np.float32))
    with pytest.raises(RDError, match=r"floating-point image with values \d+\.\.\d+ \(only 0\.\.1"):
        decode_file(bad)


def test_exif_rotation_is_applied_to_images(tmp_path):
    im = Image.fromarray(RGB)
    exif = im.getexif()
    exif[0x0112] = 6   # rotate 90 degrees clockwise when shown
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif, quality=100)
    assert decode_file(path).shape == (W, H, 3)


def test_transparent_image_is_refused(tmp_path):
    rgba = np.dstack([RGB, np.full((H, W), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    with pytest.raises(RDError, match=r"has transparent pixels.*Fix: save it without transparency"):
        decode_file(_save(tmp_path / "t.png", rgba))


def test_mask_defect_only_in_alpha_is_refused(tmp_path):
    """Before: validated silently and loaded as all-normal."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[2:4, 2:4, 3] = 255
    with pytest.raises(RDError, match=r"Mask .* transparency \(alpha\) channel that varies"):
        decode_file(_save(tmp_path / "m.png", rgba), "mask")


def test_mask_palette_and_colour_are_read_by_value(tmp_path):
    m = np.zeros((H, W, 3), np.uint8)
    m[1:3, 1:3] = (0, 0, 255)         # a blue defect: luminance > 0 but dark
    assert decode_file(_save(tmp_path / "c.png", m), "mask").sum() == 4
    Image.fromarray(m).convert("P").save(tmp_path / "p.png")
    assert decode_file(tmp_path / "p.png", "mask").sum() == 4


def test_symlink_loop_is_one_clear_error(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    with pytest.raises(RDError, match="Cannot open image .*loop.png: Too many levels of symbolic links"):
        decode_file(loop)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("d")
    prepare_category("textures", root, "brick", seed=0, generate_options={"n_train": 2, "n_test_good": 1,
                                                                          "n_per_defect": 1, "size": 48})
    return root


def test_validation_sees_what_training_loads(small, tmp_path):
    """A 16-bit training image validates and trains as the scaled image, not as white."""
    root = tmp_path / "d"
    shutil.copytree(small, root)
    path = sorted((root / "brick/train/good").glob("*.png"))[0]
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.uint16)
    Image.fromarray(gray * 257).save(path)
    validate_category(root, "brick")
    images = load_split(root, "brick", "train", 48)["images"]
    from rd.data import denormalize

    back = denormalize(images[0])[..., 0].astype(int)
    assert np.abs(back - gray).max() <= 1


def test_validation_refuses_what_loading_would_misread(small, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(small, root)
    mask = sorted((root / "brick/ground_truth").rglob("*_mask.png"))[0]
    m = np.asarray(Image.open(mask).convert("L"))
    rgba = np.zeros((*m.shape, 4), np.uint8)
    rgba[..., 3] = m
    Image.fromarray(rgba).save(mask)
    with pytest.raises(RDError, match=str(mask)):
        validate_category(root, "brick")
    with pytest.raises(RDError, match=str(mask)):
        load_split(root, "brick", "test", 48)
