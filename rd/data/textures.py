"""The embedded offline dataset: MVTec-AD-style categories cut from scikit-image's texture photos.

``generate(root, category, seed)`` writes ``<root>/<category>/`` in MVTec AD layout from one of
scikit-image's bundled 512x512 grayscale photographs (``brick``, ``grass``, ``gravel``; shipped
inside the scikit-image wheel, no download):

* ``train/good``: ``n_train`` (100) random 128x128 crops from rows 0-319 of the photo;
* ``test/good`` and ``test/<defect>``: crops from rows 320-511 only, so no test pixel was ever
  seen in training; ``n_test_good`` (20) good crops and ``n_per_defect`` (10) per defect type;
* four synthetic defect types, each with an exact mask (``ground_truth/<type>/<name>_mask.png``,
  0/255): the mask is exactly the set of pixels whose value differs from the clean crop
  (nothing dilated; a pixel the defect would leave unchanged by chance is nudged by one grey
  level so that mask and change coincide). Sizes below are for 128 px crops and are multiplied
  by a per-photo factor ``STRENGTH`` (brick 0.75, grass and gravel 1.4: a defect stands out far
  more on the regular brick pattern than on busy grass or gravel; the factors were set so that
  a nearest-neighbour detector on ImageNet EfficientNet-Lite0 features scores image AUROC
  about 0.94-0.97 on every photo, with ``stain`` the hardest type):

  - ``scratch``: a thin curved line (quadratic Bezier, 50-95 px long, 2-4 px wide), brighter
    or darker than the texture, 80-95 % opaque so the texture shows through;
  - ``hole``: an irregular blob (radius 8-16 px) darkened to 30 % texture / 70 % near-black;
  - ``stain``: a larger irregular blob (radius 12-24 px) with contrast reduced to 30-60 % and a
    brightness shift of 0.8-1.3 texture standard deviations, fading to 60 % at its rim;
  - ``cut_paste``: an irregular blob (radius 12-22 px) or rectangle (20-40 px sides) filled
    with a patch of *another* photograph (a foreign texture, rotated by a multiple of 90
    degrees), matched to the local mean and standard deviation (x0.7-1.3), so it differs in
    texture, not in brightness.

Images are RGB PNGs (the gray value replicated to three channels), masks 8-bit gray PNGs.
Deterministic: the same seed and generator version give the same files, byte for byte, in one
software environment (numpy PCG64 streams, Pillow PNG with fixed settings and no timestamps).

Generation is atomic: everything is built in ``<root>/.<category>.partial-<pid>-<random>`` and
renamed into place. An existing category with the same seed, parameters and generator version
is reused (after checking its files against the recorded content hash). A folder this generator
made with other settings is regenerated only if it holds nothing but the generator's own,
unchanged files; anything else (a folder without the generator's marker, changed files, a file
the user added) is an error naming the folder and the fix -- never a silent overwrite. The last
file written is ``generated.done`` (``rd.params.GENERATED_DONE``): it is the workflow's declared
output, so Snakemake, which deletes the outputs of a failed job, can only ever delete that file.
A killed run can leave a ``.<category>.partial-*`` folder behind; it is never read and can be
deleted.
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import shutil
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rd.data.layout import content_sha256, file_list_sha256
from rd.data.mvtec import scan_category
from rd.data.texture_defects import DEFECTS, PHOTO_SIZE, apply_defect
from rd.errors import RDError
from rd.params import GENERATED_DONE, TEXTURE_CATEGORIES

GENERATOR_VERSION = "1"   # bump on ANY change to the output (pixels, names, counts, README)
TEXTURES: tuple[str, ...] = TEXTURE_CATEGORIES
DEFECT_TYPES: tuple[str, ...] = ("cut_paste", "hole", "scratch", "stain")
TRAIN_ROWS = (0, 320)     # train crops lie entirely inside these photo rows [start, stop)
TEST_ROWS = (320, 512)    # test crops lie entirely inside these rows: disjoint from train
MARKER = "generator.json"
# Defect size multiplier per photo (times crop size / 128): the regular brick pattern makes a
# defect stand out far more than the busy grass and gravel do; without it brick is trivially
# easy and the other two near chance for a pretrained-feature detector.
STRENGTH = {"brick": 0.75, "grass": 1.4, "gravel": 1.4}
README = "README.txt"

DEFAULTS: dict[str, int] = {"n_train": 100, "n_test_good": 20, "n_per_defect": 10, "size": 128}

# Provenance as documented by scikit-image (docstrings of skimage.data.<name>).
PROVENANCE = {
    "brick": ("A small section of a brick wall. Downloaded by the scikit-image authors from CC0Textures "
              "(https://cc0textures.com/view.php?tex=Bricks25), licensed under the Creative Commons CC0 "
              "License; they applied a perspective transform, rotated it by 90 degrees, cropped and scaled it."),
    "grass": ("Some grass. Downloaded by the scikit-image authors from DeviantArt "
              "(https://www.deviantart.com/linolafett/art/Grass-01-434853879), licensed under the Creative "
              "Commons CC0 License; cropped to a 512x512 region around the top left corner, converted to "
              "grayscale and uint8, saved as PNG."),
    "gravel": ("Grayscale gravel sample. Downloaded by the scikit-image authors from CC0Textures "
               "(https://cc0textures.com/view.php?tex=Gravel04), licensed under the Creative Commons CC0 "
               "License; rescaled to 1024x1024, the top left 512x512 region cropped, converted to "
               "grayscale and uint8, saved as PNG."),
}


# --------------------------------------------------------------------------- photos
@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.shape != (PHOTO_SIZE, PHOTO_SIZE) or img.dtype != np.uint8:  # pragma: no cover - guards a skimage change
        raise RDError(f"skimage.data.{name}() returned {img.shape} {img.dtype}, expected 512x512 uint8.",
                      "install a scikit-image version that ships the texture photographs (>= 0.19).")
    img.setflags(write=False)
    return img


def _rng(seed: int, category: str, stream: str) -> np.random.Generator:
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(stream.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def _crop_positions(rng: np.random.Generator, n: int, rows: tuple[int, int], size: int) -> list[tuple[int, int]]:
    ys = rng.integers(rows[0], rows[1] - size + 1, size=n)
    xs = rng.integers(0, PHOTO_SIZE - size + 1, size=n)
    return [(int(y), int(x)) for y, x in zip(ys, xs)]


# --------------------------------------------------------------------------- in-memory generation
def _params(n_train: int, n_test_good: int, n_per_defect: int, size: int) -> dict[str, int]:
    params = {"n_train": n_train, "n_test_good": n_test_good, "n_per_defect": n_per_defect, "size": size}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RDError(f"textures: {key} must be a positive integer, got {value!r}.", f"use e.g. {key}={DEFAULTS[key]}.")
    limit = TEST_ROWS[1] - TEST_ROWS[0]
    if not 48 <= size <= limit:
        raise RDError(f"textures: crop size {size} is outside 48..{limit} (the held-out test band is {limit} rows).",
                      f"use size={DEFAULTS['size']}; the pipeline resizes crops to its image size.")
    return params


def _scale(category: str, size: int) -> float:
    return max(0.5, STRENGTH[category] * size / 128)


def _check_category(category: str) -> None:
    if category not in TEXTURES:
        raise RDError(f"Unknown texture category {category!r}.", f"use one of {', '.join(TEXTURES)}.")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise RDError(f"textures: seed must be a non-negative integer, got {seed!r}.", "use e.g. --seed 0.")
    return int(seed)


def build_arrays(category: str, seed: int = 0, **params: int) -> list[dict[str, Any]]:
    """All crops of a category in memory, with their clean versions and positions.

    Each record: ``rel`` (path inside the category), ``image`` (uint8 HxW), ``clean`` (the crop
    before the defect), ``mask`` (bool HxW or None), ``defect_type``, ``position`` (y, x in the
    photo). Used by :func:`generate` and by tests (mask == changed pixels).
    """
    _check_category(category)
    seed = _check_seed(seed)
    p = _params(**{**DEFAULTS, **params})
    size = p["size"]
    photo = _photo(category)
    foreign = [_photo(name) for name in TEXTURES if name != category]
    scale = _scale(category, size)
    records: list[dict[str, Any]] = []

    def crop(pos):
        return np.array(photo[pos[0]:pos[0] + size, pos[1]:pos[1] + size])

    for i, pos in enumerate(_crop_positions(_rng(seed, category, "train"), p["n_train"], TRAIN_ROWS, size)):
        img = crop(pos)
        records.append({"rel": f"train/good/{i:03d}.png", "image": img, "clean": img, "mask": None,
                        "defect_type": "good", "position": pos})
    for i, pos in enumerate(_crop_positions(_rng(seed, category, "test/good"), p["n_test_good"], TEST_ROWS, size)):
        img = crop(pos)
        records.append({"rel": f"test/good/{i:03d}.png", "image": img, "clean": img, "mask": None,
                        "defect_type": "good", "position": pos})
    for kind in DEFECT_TYPES:
        rng = _rng(seed, category, f"test/{kind}")
        for i, pos in enumerate(_crop_positions(rng, p["n_per_defect"], TEST_ROWS, size)):
            clean = crop(pos)
            for _ in range(50):     # redraw the (rare) defect that would cover < 8 pixels
                region, new = DEFECTS[kind](rng, clean, size, foreign, scale)
                if region.sum() >= 8:
                    break
            else:  # pragma: no cover - cannot happen with the sizes allowed by _params
                raise RuntimeError(f"textures: could not draw a {kind} defect of >= 8 pixels")
            img = apply_defect(clean, region, new)
            records.append({"rel": f"test/{kind}/{i:03d}.png", "image": img, "clean": clean, "mask": region,
                            "defect_type": kind, "position": pos})
    return records


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _readme(category: str, seed: int, params: dict[str, int]) -> str:
    import skimage

    n_test = params["n_test_good"] + params["n_per_defect"] * len(DEFECT_TYPES)
    s = params["size"]
    k = _scale(category, s)
    return f"""rd embedded texture dataset -- category "{category}"
=================================================

Generated by rd.data.textures, generator version {GENERATOR_VERSION}, seed {seed}.
Regenerate: python -m rd prepare-data --dataset textures --root <root> --category {category} --seed {seed} --out <manifest.json>

Layout (MVTec AD): train/good ({params['n_train']} images), test/good ({params['n_test_good']}),
test/<defect> ({params['n_per_defect']} each of {', '.join(DEFECT_TYPES)}; {n_test} test images in all),
ground_truth/<defect>/<name>_mask.png (0 = normal, 255 = defect).

Source photograph
  skimage.data.{category}() from scikit-image {skimage.__version__} (bundled with the package, 512x512
  grayscale). As documented by scikit-image:
{textwrap.fill(PROVENANCE[category], width=96, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False, break_long_words=False)}
  scikit-image itself is distributed under the BSD-3-Clause licence.
  The cut_paste defects also use patches of: {', '.join('skimage.data.' + t + '()' for t in TEXTURES if t != category)}
  (same provenance notes in their scikit-image docstrings; CC0).

Crops
  {s}x{s} pixels, the gray value replicated to RGB. Train crops come only from rows
  {TRAIN_ROWS[0]}-{TRAIN_ROWS[1] - 1} of the photograph, test crops only from rows {TEST_ROWS[0]}-{TEST_ROWS[1] - 1}: no test pixel
  was seen in training. Crop positions are listed in {MARKER}.

Defects -- ALL SYNTHETIC (drawn by this generator, not photographed)
  Sizes are for 128 px crops times {k:.2f} (the factor for this photograph and crop size).
  scratch   : thin curved line (50-95 px long, 2-4 px wide), brighter or darker than the
              texture, 80-95% opaque.
  hole      : irregular blob (radius 8-16 px), darkened to 30% texture / 70% near-black.
  stain     : irregular blob (radius 12-24 px), contrast reduced to 30-60% and brightness
              shifted by 0.8-1.3 texture standard deviations, fading towards its rim.
  cut_paste : irregular blob (radius 12-22 px) or rectangle (20-40 px) filled with a patch
              of another photograph, matched to the local mean and standard deviation.
  Each mask marks exactly the pixels whose value differs from the clean crop (no dilation).

This folder is reused only by the same generator version with the same seed; delete it to regenerate.
"""


ROOT_README = """rd embedded texture dataset
===========================

Categories in this folder were generated by rd.data.textures (generator version {version}) from
scikit-image's bundled texture photographs (skimage.data.brick / grass / gravel, CC0 as documented
by scikit-image). Defects are synthetic. Each category folder holds a README.txt with its seed,
provenance and defect description, and {marker} with the exact parameters and crop positions.
"""


def _build(folder: Path, category: str, seed: int, params: dict[str, int]) -> dict[str, Any]:
    records = build_arrays(category, seed, **params)
    rels = []
    for rec in records:
        path = folder / rec["rel"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(np.repeat(rec["image"][:, :, None], 3, axis=2)))
        rels.append(rec["rel"])
        if rec["mask"] is not None:
            name = Path(rec["rel"]).stem + "_mask.png"
            mrel = f"ground_truth/{rec['defect_type']}/{name}"
            mpath = folder / mrel
            mpath.parent.mkdir(parents=True, exist_ok=True)
            mpath.write_bytes(_png(rec["mask"].astype(np.uint8) * 255))
            rels.append(mrel)
    import skimage

    marker = {
        "generator": "rd.data.textures",
        "generator_version": GENERATOR_VERSION,
        "category": category,
        "seed": seed,
        "params": params,
        "train_rows": list(TRAIN_ROWS),
        "test_rows": list(TEST_ROWS),
        "defect_types": list(DEFECT_TYPES),
        "file_list_sha256": file_list_sha256(rels),
        "content_sha256": content_sha256(folder, rels),
        "n_files": len(rels),
        "positions": {rec["rel"]: list(rec["position"]) for rec in records},
        "software": {"numpy": np.__version__, "scikit-image": skimage.__version__},
    }
    (folder / README).write_text(_readme(category, seed, params), encoding="utf-8")
    (folder / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return marker


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_existing(target: Path, category: str, seed: int, params: dict[str, int]) -> dict[str, Any]:
    """Reuse ``target`` if it is this exact generation; otherwise a clear error."""
    if not target.is_dir():
        raise RDError(f"{target} exists but is not a folder.", f"delete {target} or choose another --root.")
    marker = read_marker(target)
    if marker is None or marker.get("generator") != "rd.data.textures":
        raise RDError(f"{target} already exists but was not made by rd's texture generator (no valid {MARKER}).",
                      f"delete {target} to generate it, or choose another --root; it is never overwritten.")
    want = {"generator_version": GENERATOR_VERSION, "category": category, "seed": seed, "params": params}
    have = {k: marker.get(k) for k in want}
    if have != want:
        diffs = "; ".join(f"{k} {have[k]!r} (asked: {want[k]!r})" for k in want if have[k] != want[k])
        fix = (f"delete {target} to regenerate it" +
               (f", or use --seed {have['seed']}" if have["seed"] != seed and
                all(have[k] == want[k] for k in want if k != "seed") else "") +
               "; it is never overwritten.")
        raise RDError(f"{target} was generated with different settings: {diffs}.", fix)
    index = scan_category(target.parent, category, warn=False)
    rels = index.files()
    if file_list_sha256(rels) != marker.get("file_list_sha256") or content_sha256(target, rels) != marker.get("content_sha256"):
        raise RDError(f"Files under {target} changed since they were generated (content hash differs from {target / MARKER}).",
                      f"delete {target} and rerun prepare-data to regenerate it.")
    return marker


def _foreign_files(target: Path) -> list[str]:
    """Files under ``target`` that the generator did not write (or that changed since): empty
    when the folder is provably the generator's own, so replacing it loses nothing of the user's."""
    marker = read_marker(target) or {}
    rels = scan_category(target.parent, target.name, warn=False).files()
    if (file_list_sha256(rels) != marker.get("file_list_sha256")
            or content_sha256(target, rels) != marker.get("content_sha256")):
        return ["(generated files were changed)"]
    own = set(rels) | {README, MARKER, GENERATED_DONE}
    found = []
    for dirpath, dirnames, filenames in os.walk(target, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = Path(os.path.relpath(os.path.join(dirpath, name), target)).as_posix()
            if rel not in own or os.path.islink(os.path.join(dirpath, name)):
                found.append(rel)
    return sorted(found)


def _mark_done(target: Path, marker: dict[str, Any]) -> None:
    """Written last, and the only thing the workflow declares as this step's output."""
    from rd.files import write_text

    text = json.dumps({"generator": "rd.data.textures", "content_sha256": marker.get("content_sha256")},
                      sort_keys=True) + "\n"
    path = target / GENERATED_DONE
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):   # a reuse rewrites nothing
        write_text(path, text)


def generate(root: str | os.PathLike, category: str, seed: int = 0, *, n_train: int = DEFAULTS["n_train"],
             n_test_good: int = DEFAULTS["n_test_good"], n_per_defect: int = DEFAULTS["n_per_defect"],
             size: int = DEFAULTS["size"]) -> Path:
    """Build (or reuse) ``<root>/<category>`` and return its path. See the module docstring.

    A folder is written only when it is absent, or when it carries this generator's marker and
    holds nothing but the generator's own unchanged files (then a change of seed or size
    regenerates it). Any other existing folder is refused and left exactly as it is.
    """
    from rd.files import ensure_writable_dir, write_text

    _check_category(category)
    seed = _check_seed(seed)
    params = _params(n_train, n_test_good, n_per_defect, size)
    root = Path(root)
    target = root / category
    replace = False
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        target.rmdir()   # empty: Snakemake makes the folder of its declared output before the job
    if target.exists() or target.is_symlink():
        try:
            marker = _check_existing(target, category, seed, params)
        except RDError as exc:
            generated = target.is_dir() and (read_marker(target) or {}).get("generator") == "rd.data.textures"
            if not generated or "different settings" not in str(exc):
                raise
            foreign = _foreign_files(target)
            if foreign:
                raise RDError(f"{target} was generated with other settings and now also holds files the generator "
                              f"did not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}), "
                              "so it is not regenerated.",
                              f"move those files out of {target} (or delete the folder), then rerun.") from None
            replace = True
        else:
            _mark_done(target, marker)
            return target
    ensure_writable_dir(root)
    tmp = root / f".{category}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        marker = _build(tmp, category, seed, params)
        if replace:   # only the generator's own files are in it (checked above)
            old = root / f".{category}.replaced-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.exists():
                    raise
                marker = _check_existing(target, category, seed, params)   # another process finished first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    readme = root / README
    text = ROOT_README.format(version=GENERATOR_VERSION, marker=MARKER)
    try:
        current = readme.read_text(encoding="utf-8") if readme.exists() else None
    except OSError:
        current = None
    if current is None or (current != text and current.startswith("rd embedded texture dataset")):
        write_text(readme, text)
    _mark_done(target, marker)
    return target


def content_hash_of(folder: str | os.PathLike) -> str | None:
    """The content hash recorded when the category was generated (None if not generated here)."""
    marker = read_marker(folder)
    return marker.get("content_sha256") if marker else None


__all__ = ["DEFECT_TYPES", "GENERATOR_VERSION", "TEXTURES", "TRAIN_ROWS", "TEST_ROWS",
           "build_arrays", "content_hash_of", "generate", "read_marker"]
