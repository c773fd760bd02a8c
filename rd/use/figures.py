"""The three-panel anomaly picture shared by the report's failure cases and ``predict``.

Left the image, in the middle either the ground-truth mask (report) or the anomaly map in
colour (predict), right the map blended over the image with a region outlined in white (the
ground truth in the report, the pixels at or above the threshold in predict). Drawn with numpy
and Pillow: fast, no axes, a few KB per picture.
"""

from __future__ import annotations

import io
import math

import numpy as np

GAP = 3


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that touch a pixel outside it (4-neighbourhood)."""
    inner = np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask & ~inner


def anomaly_panels_png(image: np.ndarray, amap: np.ndarray, threshold: float, *, middle: np.ndarray | None = None,
                       outline: np.ndarray | None = None, size: int = 112) -> bytes:
    """Image | middle | overlay side by side as PNG bytes, each panel ``size`` pixels square.

    ``image``: (H, W, 3) or (H, W) uint8; ``amap``: (H, W) anomaly map on the same grid.
    ``middle``: a boolean mask drawn white on black (ground truth); None draws the map itself.
    ``outline``: boolean region outlined in white on the overlay; None outlines
    ``amap >= threshold``. Colours: jet from the map minimum to the larger of the map maximum
    and the threshold, so a map that stays below the threshold never reaches red.
    """
    from matplotlib import colormaps
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.uint8)
    m = np.nan_to_num(np.asarray(amap, dtype=np.float32))
    finite_thr = threshold is not None and math.isfinite(float(threshold))
    region = np.asarray(outline, dtype=bool) if outline is not None else (
        m >= float(threshold) if finite_thr else np.zeros(m.shape, dtype=bool))
    vmin = float(m.min()) if m.size else 0.0
    vmax = max(float(m.max()) if m.size else 1.0, float(threshold) if finite_thr else -np.inf, vmin + 1e-6)
    heat = colormaps["jet"](np.clip((m - vmin) / (vmax - vmin), 0, 1))[..., :3] * 255
    overlay = (0.55 * img + 0.45 * heat).astype(np.uint8)
    if region.any():
        overlay[_outline(region)] = 255
    if middle is None:
        centre, centre_resample = heat.astype(np.uint8), Image.BILINEAR
    else:
        centre = np.repeat((np.asarray(middle, dtype=bool) * 255).astype(np.uint8)[..., None], 3, axis=2)
        centre_resample = Image.NEAREST
    panels = [Image.fromarray(img).resize((size, size), Image.BILINEAR),
              Image.fromarray(centre).resize((size, size), centre_resample),
              Image.fromarray(overlay).resize((size, size), Image.BILINEAR)]
    canvas = Image.new("RGB", (3 * size + 2 * GAP, size), (255, 255, 255))
    for i, p in enumerate(panels):
        canvas.paste(p, (i * (size + GAP), 0))
    buf = io.BytesIO()
    # a 256-colour palette keeps a thumbnail triplet near 15 KB instead of 45 KB
    canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
