"""The embedded dataset's four synthetic defect types (see ``rd.data.textures`` for the recipe).

Each defect function takes ``(rng, clean, size, photos, k)`` — the crop's random stream, the clean
uint8 crop, its size, the source photographs (for ``cut_paste``) and the size factor — and
returns ``(region, new_values)``; ``apply_defect`` writes them so that the mask is exactly the
set of changed pixels. Any change here changes the generated files: bump
``rd.data.textures.GENERATOR_VERSION``.
"""

from __future__ import annotations

import numpy as np

PHOTO_SIZE = 512


def apply_defect(clean: np.ndarray, region: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``clean`` with ``new`` inside ``region``; every region pixel is guaranteed to change."""
    out = clean.copy()
    vals = np.clip(np.rint(new[region]), 0, 255).astype(np.uint8)
    old = clean[region]
    same = vals == old
    vals[same] = np.where(old[same] < 255, old[same] + 1, old[same] - 1)
    out[region] = vals
    return out


def _blob(rng: np.random.Generator, size: int, r_min: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Irregular blob (radius with random harmonics); returns (region, normalised radius)."""
    r = rng.uniform(r_min, r_max)
    amps = rng.uniform(-0.18, 0.18, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    aspect = rng.uniform(0.7, 1.0)
    turn = rng.uniform(0, np.pi)
    reach = r * 1.6 + 2
    cy, cx = rng.uniform(reach, size - reach, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(turn) + dy * np.sin(turn)
    v = (-dx * np.sin(turn) + dy * np.cos(turn)) / aspect
    theta = np.arctan2(v, u)
    radius = r * (1 + sum(a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(zip(amps, phases))))
    rel = np.hypot(u, v) / radius
    return rel <= 1.0, rel


def _scratch(rng, clean, size, photos, k):
    length = min(rng.uniform(50, 95) * k, 0.9 * size)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    centre = rng.uniform(length / 2 * 0.75 + 4, size - length / 2 * 0.75 - 4, size=2)
    p0, p2 = centre - direction * length / 2, centre + direction * length / 2
    p1 = centre + normal * rng.uniform(-0.35, 0.35) * length
    t = np.linspace(0.0, 1.0, 200)[:, None]
    pts = np.clip((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2, 2, size - 3)
    half_width = rng.uniform(1.0, 2.0) * k
    lo = np.floor(pts.min(0) - 3).astype(int).clip(0, size)
    hi = np.ceil(pts.max(0) + 4).astype(int).clip(0, size)
    yy, xx = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]   # pts are (x, y)
    d2 = (xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2
    region = np.zeros((size, size), bool)
    region[lo[1]:hi[1], lo[0]:hi[0]] = d2.min(-1) <= half_width ** 2
    c = clean.astype(np.float64)
    if rng.random() < 0.5:
        level = min(255.0, np.percentile(c, 99) + rng.uniform(15, 40))
    else:
        level = max(0.0, np.percentile(c, 1) - rng.uniform(15, 40))
    alpha = rng.uniform(0.8, 0.95)
    return region, (1 - alpha) * c + alpha * level


def _hole(rng, clean, size, photos, k):
    region, _ = _blob(rng, size, 8 * k, 16 * k)
    c = clean.astype(np.float64)
    floor = max(0.0, np.percentile(c, 1) - 20)
    return region, 0.3 * c + 0.7 * floor


def _stain(rng, clean, size, photos, k):
    region, rel = _blob(rng, size, 12 * k, 24 * k)
    c = clean.astype(np.float64)
    mean = c[region].mean()
    contrast = rng.uniform(0.3, 0.6)
    shift = rng.uniform(0.8, 1.3) * max(c.std(), 10.0) * (1 if rng.random() < 0.5 else -1)
    fade = 0.6 + 0.4 * (1 - np.clip(rel, 0, 1) ** 2)          # strongest in the middle
    stained = mean + (c - mean) * contrast + shift
    return region, c + (stained - c) * fade


def _cut_paste(rng, clean, size, photos, k):
    if rng.random() < 0.5:
        region, _ = _blob(rng, size, 12 * k, 22 * k)
    else:
        h, w = rng.integers(int(20 * k), int(40 * k), size=2)
        y, x = rng.integers(4, size - 4 - h), rng.integers(4, size - 4 - w)
        region = np.zeros((size, size), bool)
        region[y:y + h, x:x + w] = True
    foreign = photos[int(rng.integers(len(photos)))]
    fy, fx = rng.integers(0, PHOTO_SIZE - size + 1, size=2)
    patch = np.rot90(foreign[fy:fy + size, fx:fx + size], k=int(rng.integers(4))).astype(np.float64)
    c = clean.astype(np.float64)
    p_std = patch[region].std() or 1.0
    gain = rng.uniform(0.7, 1.3)
    matched = (patch - patch[region].mean()) / p_std * c[region].std() * gain + c[region].mean()
    return region, matched


DEFECTS = {"cut_paste": _cut_paste, "hole": _hole, "scratch": _scratch, "stain": _stain}
