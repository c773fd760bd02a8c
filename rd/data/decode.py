"""One decoder for every image and mask: validation, training, evaluation and every dataset
reader call :func:`decode_file`, so a file is checked exactly as it is later loaded.

Images become (H, W, 3) uint8 RGB, masks (H, W) bool (True = defect). Bit depth, palettes,
alpha and EXIF orientation are handled explicitly (see :func:`decode_file`); what cannot be
read without guessing is refused with one :class:`rd.errors.RDError` saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rd.errors import RDError

# without guessing is refused with a message saying what to do.
_FIX_CORRUPT = "the file is corrupt, truncated or not an image; replace it or delete it."
_FIX_8BIT = "save it as an 8-bit (or 16-bit) PNG, RGB or grayscale."
# Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS (~179 Mpx) as possible decompression
# bombs; a user who trusts a larger image raises the limit with this variable (0: no limit).
MAX_PIXELS_ENV = "RD_MAX_IMAGE_PIXELS"


def _pixel_limit() -> int | None:
    """Pillow's MAX_IMAGE_PIXELS for this process: Pillow's default unless RD_MAX_IMAGE_PIXELS is set."""
    from PIL import Image

    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return Image.MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise RDError(f"{MAX_PIXELS_ENV}={text!r} is not a whole number of pixels.",
                      f"set {MAX_PIXELS_ENV} to a pixel count (e.g. 250000000), 0 for no limit, or unset it.") from None
    if value < 0:
        raise RDError(f"{MAX_PIXELS_ENV}={text!r} is negative.",
                      "set it to a pixel count, 0 for no limit, or unset it.")
    return value or None


def _bomb(path: Path, what: str, exc: BaseException) -> RDError:
    return RDError(f"Cannot read {what} {path}: it has more pixels than Pillow's decompression-bomb guard allows "
                   f"({str(exc).splitlines()[0][:160]}).",
                   f"if you trust the file, raise the limit with {MAX_PIXELS_ENV}=<pixels> (0: no limit) in the "
                   "environment of the command, or shrink the image.")


def _open(path: Path, what: str, strict: bool):
    """Open and fully decode ``path``, turned upright by its EXIF orientation (as viewers show it)."""
    from PIL import Image, ImageOps

    limit = _pixel_limit()
    default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
    try:
        if strict:
            with Image.open(path) as im:
                if im.format == "PNG":
                    im.verify()
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright is im:
                upright = im.copy()
            upright.format = im.format   # copy() drops it
            return upright
    except Image.DecompressionBombError as exc:
        raise _bomb(path, what, exc) from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system, not the decoder (permissions, a symlink loop, ...)
            raise RDError(f"Cannot open {what} {path}: {exc.strerror}.",
                          "check the file and its permissions (a symbolic link may point to itself).") from exc
        raise _unreadable(path, what, exc) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a data problem
        raise _unreadable(path, what, exc) from exc
    finally:
        Image.MAX_IMAGE_PIXELS = default


def _unreadable(path: Path, what: str, exc: BaseException) -> RDError:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return RDError(f"Cannot read {what} {path}: {reason}.", _FIX_CORRUPT)


def _gray16_to_8(arr: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (65535 -> 255, 32768 -> 128)."""
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _alpha(im) -> np.ndarray | None:
    return np.asarray(im.getchannel("A")) if "A" in im.getbands() else None


def _image_array(im, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded image, or RDError for what has no single reading."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = _alpha(im)
    if alpha is not None:
        if alpha.min() < 255:
            raise RDError(f"Image {path} has transparent pixels (alpha channel, {int((alpha < 255).sum())} "
                          "pixel(s)); the colour under them is undefined for the network.",
                          "save it without transparency (flatten it onto a background) as RGB or grayscale.")
        im = im.convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N") or (im.mode == "I" and im.format == "PNG"):
        gray = np.asarray(im)
        if gray.min() < 0 or gray.max() > 65535:
            raise RDError(f"Image {path} is a 32-bit integer image with values {gray.min()}..{gray.max()}.", _FIX_8BIT)
        return np.repeat(_gray16_to_8(gray)[..., None], 3, axis=2)
    if im.mode == "I":
        raise RDError(f"Image {path} is a 32-bit integer image: its brightness scale is unknown.", _FIX_8BIT)
    if im.mode == "F":
        gray = np.asarray(im, dtype=np.float32)
        if not np.isfinite(gray).all() or gray.min() < 0 or gray.max() > 1:
            lo, hi = np.nanmin(gray), np.nanmax(gray)
            raise RDError(f"Image {path} is a floating-point image with values {lo:g}..{hi:g} "
                          f"{'and NaN/inf ' if not np.isfinite(gray).all() else ''}(only 0..1 is understood).",
                          _FIX_8BIT)
        return np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=2)
    try:   # 1-bit, L, RGB, CMYK, YCbCr, LAB, HSV: Pillow's colour conversion
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise RDError(f"Image {path} has the unsupported pixel format {im.mode!r} ({exc}).", _FIX_8BIT) from exc
    return np.asarray(rgb, dtype=np.uint8)


def _mask_array(im, path: Path) -> np.ndarray:
    """(H, W) bool of a decoded mask: a pixel is a defect when its value (any colour channel) is
    not 0. A transparency channel that varies is refused: it would hide or invent defects."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = _alpha(im)
    if alpha is not None:
        if alpha.min() != alpha.max():
            raise RDError(f"Mask {path} has a transparency (alpha) channel that varies: defects are read from "
                          "its gray or colour values (0 normal, > 0 defect), so what the alpha channel marks "
                          "would be ignored.",
                          "save the mask as 8-bit grayscale without alpha (0 = normal, 255 = defect).")
        im = im.convert("RGB" if im.mode in ("RGBA", "RGBa", "PA") else "L")
    if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(im)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise RDError(f"Mask {path} holds NaN or infinite values.", "save the mask as 8-bit grayscale "
                          "(0 = normal, 255 = defect).")
        return values != 0
    try:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise RDError(f"Mask {path} has the unsupported pixel format {im.mode!r} ({exc}).",
                      "save the mask as 8-bit grayscale (0 = normal, 255 = defect).") from exc
    return np.asarray(rgb).any(axis=2)


def decode_file(path: str | os.PathLike, what: str = "image", strict: bool = False) -> np.ndarray:
    """The pixels of one image (``what="image"``: (H, W, 3) uint8 RGB) or mask (``"mask"``:
    (H, W) bool, True = defect), exactly as training, evaluation and validation see them.

    Fully decoded (truncation is caught); ``strict`` also checks a PNG's chunk checksums and
    end marker (``load`` alone accepts a PNG that lost only its tail). EXIF orientation is
    applied to images and masks alike. 16-bit grayscale is scaled to 8 bits (not clipped);
    palette, 1-bit, CMYK and gray-with-opaque-alpha files are converted; a transparent image, a
    mask with varying alpha and float/32-bit images outside a known scale are refused.
    """
    path = Path(path)
    im = _open(path, what, strict)
    return _mask_array(im, path) if what == "mask" else _image_array(im, path)
