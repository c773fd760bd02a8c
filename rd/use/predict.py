"""Score new images with a trained run: ``python -m rd predict RUN IMAGES... --out DIR``.

Nothing is retrained. The run's ``model.pt`` is rebuilt (teacher checked by fingerprint) and
every image is preprocessed exactly as in training: decoded to RGB, resized to the run's
``image_size`` and ImageNet-normalised by the same code that loads the dataset, so a 256-px
model is never fed 64-px inputs. Maps and scores come from the same functions ``evaluate``
uses, so a run's own test images get the scores of its ``scores.csv``.

Inputs: image files, folders (searched recursively, in sorted order) and list files (``.txt``,
``.lst`` or ``.list``: one path per line, relative paths taken from the current directory,
blank lines and lines starting with ``#`` ignored). A file that is not an image, cannot be
decoded or does not exist is skipped with one warning line and listed in ``predictions.csv``
with the reason; the rest is scored. With no image left to score, nothing is written.

Outputs in ``DIR``: ``predictions.csv`` (path, score, decision, threshold, threshold_source,
figure, reason; written last, so its presence means the run is complete) and, unless
``figures=False``, one PNG per image in ``DIR/figures``: image | anomaly map | overlay with
the region at or above the threshold outlined.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from rd import files
from rd.data.layout import IMAGE_EXTENSIONS, load_image
from rd.errors import RDError
from rd.params import DEVICE_DEFAULT
from rd.use.thresholds import Threshold, resolve_threshold

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
COLUMNS = ["path", "score", "decision", "threshold", "threshold_source", "figure", "reason"]
FIGURES = "figures"


class SkippedFileWarning(UserWarning):
    """An input file that was not scored (not an image, unreadable, missing)."""


@dataclass(frozen=True)
class Entry:
    """One input path, in the order given; ``reason`` is set when it cannot be scored."""

    path: Path
    reason: str = ""


def resolve_run(run: str | os.PathLike) -> tuple[Path, Path]:
    """(run folder, model.pt) for a run folder or a model.pt path."""
    run = Path(run)
    fix = ("pass a run folder written by `python -m rd train` "
           "(e.g. results/runs/<dataset>/<category>/<backbone>/<setting>/seed<N>) or its model.pt.")
    if run.is_dir():
        if not (run / "model.pt").is_file():
            raise RDError(f"Run folder {run} has no model.pt (training did not finish there, or it is not a run).", fix)
        return run, run / "model.pt"
    if run.is_file():
        return run.parent, run
    raise RDError(f"Run {run} does not exist.", fix)


def _folder_entries(folder: Path, exclude: Sequence[Path] = ()) -> list[Entry]:
    """Every file under ``folder``, sorted. Symbolic links to folders are followed; a folder
    reached a second time (a link loop, or two links to one folder) is searched once, with one
    warning. Folders in ``exclude`` (the output folder) are not searched."""
    out = []
    skip = {os.path.realpath(p) for p in exclude}
    seen = {_folder_key(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            sub = os.path.join(dirpath, d)
            if os.path.realpath(sub) in skip:
                continue
            key = _folder_key(sub)
            if key in seen:
                warnings.warn(f"not searching {sub} again: it leads to a folder already searched "
                              f"({os.path.realpath(sub)}; a symbolic-link loop or a second link).", stacklevel=4)
                continue
            seen.add(key)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                out.append(Entry(p, "hidden file"))
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                out.append(Entry(p, f"not an image file (extension {p.suffix or 'none'})"))
            else:
                out.append(Entry(p))
    return out


def _folder_key(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _entries(item: Path, from_list: bool, exclude: Sequence[Path] = ()) -> list[Entry]:
    if item.is_dir():
        return _folder_entries(item, exclude)
    if not item.exists():
        return [Entry(item, "does not exist")]
    if not item.is_file():
        return [Entry(item, "not a regular file")]
    suffix = item.suffix.lower()
    if suffix in LIST_SUFFIXES and not from_list:
        try:
            # utf-8-sig: a byte-order mark (Windows editors) is no part of the first path
            lines = item.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RDError(f"Cannot read the list file {item}: {exc}.",
                          "give a UTF-8 text file with one image path per line.") from exc
        out: list[Entry] = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                out += _entries(Path(line), from_list=True, exclude=exclude)
        return out
    if suffix not in IMAGE_EXTENSIONS:
        return [Entry(item, f"not an image file (extension {item.suffix or 'none'})")]
    return [Entry(item)]


def collect_images(items: Iterable[str | os.PathLike], exclude: Sequence[str | os.PathLike] = ()) -> list[Entry]:
    """Expand files, folders and list files into entries (duplicates dropped, order kept);
    folders in ``exclude`` (predict's own output folder) are not searched."""
    seen: set[str] = set()
    out = []
    for item in items:
        for e in _entries(Path(item), from_list=False, exclude=[Path(p) for p in exclude]):
            key = os.path.abspath(e.path)
            if key not in seen:
                seen.add(key)
                out.append(e)
    return out


def figure_names(paths: Sequence[Path]) -> list[str]:
    """Unique PNG names: each path relative to the inputs' common folder, ``/`` -> ``__``.

    Names that would clash (``a/b.png`` and a file named ``a__b.png``; ``A.png`` and ``a.png``,
    one file on a case-insensitive disk) get ``~2``, ``~3``, ... in input order, so no figure
    overwrites another."""
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    names: list[str] = []
    taken: set[str] = set()
    for p in absolute:
        name = Path(os.path.relpath(p, common)).as_posix().replace("/", "__")
        stem = name[:-4] if name.lower().endswith(".png") else name
        name, n = stem + ".png", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}~{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names


def _warn_skipped(entry: Entry) -> None:
    warnings.warn(f"skipped {entry.path}: {entry.reason}.", SkippedFileWarning, stacklevel=3)


def _decode_batch(entries: Sequence[Entry], image_size: int):
    """Decode a batch; entries that fail come back with their reason (warned about by the caller)."""
    import torch

    images, done = [], []
    for e in entries:
        try:
            img = load_image(e.path, image_size)
        except RDError as exc:
            detail = exc.problem.split(f"{e.path}: ", 1)[-1].rstrip(".")  # the decoder's words, not the path again
            e = Entry(e.path, f"cannot be read as an image ({detail})")
        else:
            images.append(img)
        done.append(e)
    return (torch.stack(images) if images else None), done


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="predict", file=sys.stderr, mininterval=1.0, dynamic_ncols=True)


def predict_images(run: str | os.PathLike, images: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                   threshold: str | float = "good", device: str = DEVICE_DEFAULT, batch_size: int = 16,
                   figures: bool = True, threads: int | None = None) -> pd.DataFrame:
    """Score ``images`` with the run and write ``predictions.csv`` (+ figures) into ``out_dir``."""
    import torch

    from rd.data import denormalize
    from rd.devices import resolve_device
    from rd.method.inference import image_scores, predict
    from rd.use.figures import anomaly_panels_png
    from rd.run import load_model

    t0 = time.perf_counter()
    if batch_size < 1:
        raise RDError(f"Batch size must be at least 1, got {batch_size}.", "pass --batch-size 1 or more.")
    run_dir, model_path = resolve_run(run)
    thr: Threshold = resolve_threshold(threshold, run_dir)
    # the outputs are never inputs: a rerun into a folder it scans does not score its own figures
    entries = collect_images(images, exclude=[out_dir, Path(out_dir) / FIGURES])
    own = os.path.realpath(Path(out_dir) / "predictions.csv")
    entries = [e for e in entries if os.path.realpath(e.path) != own]
    scorable = [e for e in entries if not e.reason]
    if not scorable:
        where = ", ".join(str(i) for i in images) or "(nothing given)"
        raise RDError(f"No images to score in {where}" + (f" ({len(entries)} non-image file(s) only)" if entries else "")
                      + ".", f"pass image files ({' '.join(sorted(IMAGE_EXTENSIONS))}), folders holding them, "
                      "or a list file (.txt) with one image path per line.")
    for e in entries:
        if e.reason:
            _warn_skipped(e)
    out = files.ensure_writable_dir(out_dir)
    stale = files.clear_stale_temporaries(out, ("predictions.csv",))
    stale += files.clear_stale_temporaries(out / FIGURES, (), suffixes=(".png",)) if (out / FIGURES).is_dir() else []
    if stale:
        warnings.warn(f"removed {len(stale)} temporary file(s) an interrupted earlier predict left in {out}.",
                      stacklevel=2)
    if threads:
        torch.set_num_threads(max(1, threads))
    model, cfg = load_model(model_path)
    size = cfg.image_size
    names = dict(zip((e.path for e in scorable), figure_names([e.path for e in scorable])))
    panel = max(size, 128)
    results: dict[Path, tuple[float, str]] = {}
    failed: dict[Path, Entry] = {}
    # One set, predictions.csv (the completion marker) last: figures appear only with it.
    with files.output_set(out / "predictions.csv"):
        with resolve_device(device) as lease, _progress(len(scorable)) as bar:
            model = model.to(lease.device)
            for start in range(0, len(scorable), batch_size):
                x, done = _decode_batch(scorable[start:start + batch_size], size)
                ok = [e for e in done if not e.reason]
                failed.update({e.path: e for e in done if e.reason})
                if x is not None:
                    maps = predict(model, x, size, lease.device, batch_size)
                    scores = image_scores(maps)
                    pictures = denormalize(x) if figures else None
                    for i, e in enumerate(ok):
                        figure = ""
                        if figures:
                            figure = f"{FIGURES}/{names[e.path]}"
                            files.write_bytes(out / figure,
                                           anomaly_panels_png(pictures[i], maps[i], thr.value, size=panel))
                        results[e.path] = (float(scores[i]), figure)
                bar.update(len(done))
        for e in failed.values():  # after the progress bar, so each warning keeps its own line
            _warn_skipped(e)
        if not results:
            raise RDError(f"None of the {len(scorable)} image file(s) could be read (see the warnings above).",
                          "replace the corrupt files or pass other images.")
        rows = []
        for e in entries:
            e = failed.get(e.path, e)
            if e.reason:
                rows.append({"path": str(e.path), "score": None, "decision": "skipped", "threshold": thr.value,
                             "threshold_source": thr.source, "figure": "", "reason": e.reason})
                continue
            score, figure = results[e.path]
            rows.append({"path": str(e.path), "score": score, "decision": "anomalous" if score >= thr.value else "good",
                         "threshold": thr.value, "threshold_source": thr.source, "figure": figure, "reason": ""})
        frame = pd.DataFrame(rows, columns=COLUMNS)
        files.write_csv(out / "predictions.csv", frame)
    n_bad = int((frame.decision == "anomalous").sum())
    print(f"predict: {len(results)} image(s) scored in {time.perf_counter() - t0:.1f} s on {lease.device}: "
          f"{n_bad} anomalous at threshold {thr.value:.6g} ({thr.choice}), {len(frame) - len(results)} skipped; "
          f"wrote {out / 'predictions.csv'}", file=sys.stderr)
    return frame
