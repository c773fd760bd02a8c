"""The contract of every command, kept by a generated table of damaged inputs.

For every command a valid invocation is built once; then each case damages ONE input (a file
truncated, emptied or swapped for another kind, a flag or setting key given a bad value, a
column removed, a cell of the wrong type, an unusual but valid image) and runs the real command
line. Each case must end in exactly one of two ways:

* exit 0 and the command's outputs present (the damage was harmless or handled, e.g. a
  damaged checkpoint is set aside), or
* exit 2 with exactly one ``error: ... Fix: ...`` line, no traceback, and no new or
  half-written file in the output folder (a file that was there before is left as it was).

The table is the product of the inputs each command reads and the damages that apply to that
kind of input (plus, for flags and setting keys, one bad value of a seeded-random kind per flag;
tests/test_params.py walks all kinds in-process). Cases run in processes forked from the warm
forkserver of tests/helpers/reliability.py, so the whole table takes well under a minute of CPU.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.helpers.reliability import CAT, Result, rd

OK, ERROR = "ok", "error"
SEED = 20261201
SENTINEL = "earlier-output.txt"


# --------------------------------------------------------------------------- damages
def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def as_text(path: Path) -> None:
    path.write_text("this is not the file you are looking for\n")


def as_png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format="PNG")


def as_json(path: Path) -> None:
    path.write_text('{"a": [1, 2, 3]}\n')


def as_torch(path: Path) -> None:
    import torch

    torch.save({"weight": torch.zeros(3)}, path)


def as_json_list(path: Path) -> None:
    path.write_text("[1, 2, 3]\n")


def drop_column(name: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        import pandas as pd

        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        frame.drop(columns=[name]).to_csv(path, index=False)

    damage.__name__ = f"drop_{name}"
    return damage


def set_cell(column: str, value: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        import pandas as pd

        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        frame.loc[frame.index[-1], column] = value
        frame.to_csv(path, index=False)

    damage.__name__ = f"cell_{column}_{value or 'empty'}"
    return damage


def add_text_column(path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    frame["teacher_tag"] = "tv_in1k"   # a text column another version adds
    frame.to_csv(path, index=False)


def png16(path: Path) -> None:
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(rgb).save(path)


def palette(path: Path) -> None:
    from PIL import Image

    Image.open(path).convert("RGB").convert("P").save(path)


def transparent(path: Path) -> None:
    from PIL import Image

    im = Image.open(path).convert("RGBA")
    alpha = np.full(im.size[::-1], 255, np.uint8)
    alpha[:4, :4] = 0
    im.putalpha(Image.fromarray(alpha))
    im.save(path)


def alpha_only_mask(path: Path) -> None:
    from PIL import Image

    m = np.asarray(Image.open(path).convert("L"))
    rgba = np.zeros((*m.shape, 4), np.uint8)
    rgba[..., 3] = m
    Image.fromarray(rgba).save(path)


def symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


FILE_DAMAGES = [empty, truncate, as_text, as_png, as_json]


# --------------------------------------------------------------------------- the valid world
@dataclass
class World:
    root: Path                     # dataset (MVTec layout)
    model: Path                    # a trained model.pt
    checkpoint: Path               # a checkpoint.pt of the same configuration (epoch 1 of 2)
    weights: Path                  # a resnet18 state dict
    fake: dict = field(default_factory=dict)   # aggregate/stats/report inputs (helpers.report_fixtures)


def train_flags(epochs: str = "1") -> list[str]:
    return ["--image-size", "32", "--epochs", epochs, "--batch-size", "2", "--seed", "0", "--device", "cpu",
            "--threads", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    import torch

    from rd.aggregate import write_summary
    from rd.data import prepare_category
    from helpers.report_fixtures import make_fake_results
    from rd.stats import write_stats

    base = tmp_path_factory.mktemp("world")
    root = base / "data"
    prepare_category("textures", root, CAT, seed=0, generate_options={"n_train": 4, "n_test_good": 2,
                                                                      "n_per_defect": 1, "size": 64})
    run = base / "run"
    res = rd("train", "--data-root", str(root), "--category", CAT, "--backbone", "resnet18", *train_flags(),
             "--out-dir", str(run), cwd=base)
    assert res.rc == 0, res.stderr
    res = rd("evaluate", "--data-root", str(root), "--category", CAT, "--model", str(run / "model.pt"),
             "--device", "cpu", "--failure-cases", "1", "--out-dir", str(run), cwd=base)  # threshold.json
    assert res.rc == 0, res.stderr
    # a checkpoint as training writes it after epoch 1 of 2 (the checkpoint cases train 2 epochs)
    from rd.optim import make_optimizer, make_scheduler
    from rd.run import TrainConfig, build_seeded
    from rd.train import student_modules

    cfg = TrainConfig(data_root=str(root), category=CAT, backbone="resnet18", image_size=32, epochs=2,
                      batch_size=2, device="cpu")
    model = build_seeded(cfg)
    opt = make_optimizer(student_modules(model), cfg.setting)
    sched = make_scheduler(opt, cfg.setting, 2, cfg.epochs)
    checkpoint = base / "checkpoint.pt"
    torch.save({"identity": cfg.identity(), "epoch": 1, "history": [{"epoch": 1, "loss": 1.0, "lr": 0.005,
                                                                      "seconds": 0.1, "elapsed": 0.1}],
                "student": model.student_state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict()}, checkpoint)
    weights = base / "resnet18.pth"
    torch.save(_resnet18_state(), weights)
    fake_root = base / "fake"
    fake = make_fake_results(fake_root, categories=("brick", "grass"), seeds=(0, 1), n_test=8, failure_k=1,
                             arms=("resnet18/baseline", "convnext_pico/baseline"), eval_every=0)
    summary, stats = fake_root / "summary.csv", fake_root / "stats.csv"
    write_summary(fake["runs"], complexity=fake["complexity"], benchmarks=fake["benchmarks"], out=summary)
    write_stats(summary, fake["comparisons"], out=stats, n_boot=200)
    fake.update(summary=summary, stats=stats)
    return World(root, run / "model.pt", checkpoint, weights, fake)


def _resnet18_state() -> dict:
    import timm

    return timm.create_model("resnet18", pretrained=False).state_dict()


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One damaged invocation. ``prepare(case_dir, world) -> (argv, needle)`` copies and damages
    its input; ``needle`` must appear in the error line (the damaged file or the flag)."""

    command: str
    id: str
    prepare: Callable[[Path, World], tuple[list[str], str]]
    expect: str
    outputs: tuple[str, ...]       # relative to the case's out/ folder, present on success


def _copy_data(case: Path, w: World) -> Path:
    root = case / "data"
    shutil.copytree(w.root, root, symlinks=True)
    return root


def _argv(command: str, case: Path, w: World, **over: str) -> list[str]:
    """The valid invocation of ``command`` writing into ``case/out``; ``over`` replaces inputs."""
    out = case / "out"
    f = w.fake
    root = over.get("root", str(w.root))
    return {
        "prepare-data": ["prepare-data", "--dataset", "mvtec", "--root", root, "--category", CAT,
                         "--out", str(out / "m.json")],
        "smoke": ["smoke", "--backbone", "resnet18", "--weights", over.get("weights", str(w.weights)),
                  "--image-sizes", "32", "--out", str(out / "s.json")],
        "complexity": ["complexity", "--backbone", "resnet18", "--image-size", "32", "--batch-size", "2",
                       "--out", str(out / "c.json")],
        "train": ["train", "--data-root", root, "--category", CAT, "--backbone", "resnet18",
                  *train_flags(over.get("epochs", "1")),
                  "--out-dir", str(out)],
        "lr-select": ["lr-select", "--data-root", root, "--category", CAT, "--backbone", "resnet18",
                      "--image-size", "32", "--batch-size", "2", "--seed", "0", "--device", "cpu", "--threads", "1",
                      "--lr", "0.001",
                      "--select-epochs", "1", "--out", str(out / "lr.json")],
        "evaluate": ["evaluate", "--data-root", root, "--category", CAT, "--model", over.get("model", str(w.model)),
                     "--device", "cpu", "--failure-cases", "1", "--out-dir", str(out)],
        "aggregate": ["aggregate", "--runs", *over.get("runs", f["runs"]), "--complexity", *f["complexity"],
                      "--out", str(out / "summary.csv")],
        "stats": ["stats", "--summary", over.get("summary", str(f["summary"])),
                  *[x for a, b in f["comparisons"] for x in ("--comparison", a, b)], "--out", str(out / "stats.csv")],
        "predict": ["predict", over.get("model", str(w.model.parent)), over.get("images", str(w.root / CAT / "test")),
                    "--threshold", over.get("threshold", "good"), "--device", "cpu", "--batch-size", "4",
                    "--no-images", "--out", str(out)],
        "export": ["export", over.get("model", str(w.model.parent)), "--threshold", over.get("threshold", "good"),
                   "--out", str(out / "m.onnx")],
        "report": ["report", "--summary", over.get("summary", str(f["summary"])),
                   "--stats", over.get("stats", str(f["stats"])), "--config", over.get("config", str(f["config"])),
                   "--data-manifests", *over.get("manifests", f["manifests"]), "--out", str(out / "report.html")],
    }[command]


OUTPUTS = {"prepare-data": ("m.json",), "smoke": ("s.json",), "complexity": ("c.json",),
           "train": ("model.pt", "train.json", "history.csv"), "lr-select": ("lr.json",), "evaluate": ("metrics.json",),
           "aggregate": ("summary.csv",), "stats": ("stats.csv",), "report": ("report.html",),
           "predict": ("predictions.csv",), "export": ("m.onnx", "m.json")}


def _file_case(command: str, what: str, damage: Callable[[Path], None], expect: str,
               locate: Callable[[Path, World], tuple[Path, dict]]) -> Case:
    """Damage one file: ``locate`` copies it into the case folder and returns (copy, overrides)."""
    def prepare(case: Path, w: World) -> tuple[list[str], str]:
        target, over = locate(case, w)
        damage(target)
        return _argv(command, case, w, **over), str(target)

    return Case(command, f"{command}:{what}:{damage.__name__}", prepare, expect, OUTPUTS[command])


def _copied(src_of: Callable[[World], Path], name: str, key: str, as_list: bool = False):
    def locate(case: Path, w: World) -> tuple[Path, dict]:
        dest = case / "in" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_of(w), dest)
        return dest, {key: [str(dest)] if as_list else str(dest)}
    return locate


def _data_file(rel: Callable[[Path], Path]):
    def locate(case: Path, w: World) -> tuple[Path, dict]:
        root = _copy_data(case, w)
        return rel(root / CAT), {"root": str(root)}
    return locate


def _first(folder: Path, pattern: str = "*.png") -> Path:
    return sorted(folder.glob(pattern))[0]


def _defect_image(cat: Path) -> Path:
    return _first(next(p for p in sorted((cat / "test").iterdir()) if p.name != "good"))


def _defect_mask(cat: Path) -> Path:
    return _first(next(p for p in sorted((cat / "ground_truth").iterdir())))


def _run_copy(file: str):
    """Copy one run folder of the fake results; damage its ``file``."""
    def locate(case: Path, w: World) -> tuple[Path, dict]:
        runs = list(w.fake["runs"])
        dest = case / "in" / "runs" / Path(runs[0]).relative_to(Path(runs[0]).parents[4])
        shutil.copytree(runs[0], dest)
        runs[0] = str(dest)
        return dest / file, {"runs": runs}
    return locate


def _predict_model(case: Path, w: World) -> tuple[Path, dict]:
    dst = case / "model.pt"
    shutil.copy2(w.model, dst)
    return dst, {"model": str(dst), "threshold": "0.5"}


def _run_folder_copy(name: str):
    """A copy of the trained run's folder; ``name`` in it is damaged."""
    def locate(case: Path, w: World) -> tuple[Path, dict]:
        run = case / "run"
        shutil.copytree(w.model.parent, run)
        return run / name, {"model": str(run)}

    return locate


def _predict_image(case: Path, w: World) -> tuple[Path, dict]:
    images = case / "images"
    shutil.copytree(w.root / CAT / "test" / "good", images)
    return _first(images), {"images": str(images)}


def _checkpoint(case: Path, w: World) -> tuple[Path, dict]:
    out = case / "out"
    shutil.copy2(w.checkpoint, out / "checkpoint.pt")
    return out / "checkpoint.pt", {"epochs": "2"}


def _edit_torch(edit: Callable[[dict], None], name: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        import torch

        obj = torch.load(path, weights_only=True)
        edit(obj)
        torch.save(obj, path)

    damage.__name__ = name
    return damage


def _reshape_first_student_tensor(obj: dict) -> None:
    """Student tensors of another backbone: the first tensor gets another width."""
    import torch

    key = next(k for k, v in obj["student"].items() if v.ndim == 4)
    obj["student"][key] = torch.zeros(obj["student"][key].shape[0] + 8, *obj["student"][key].shape[1:])


unchanged = _edit_torch(lambda obj: None, "unchanged")
other_backbone = _edit_torch(_reshape_first_student_tensor, "other_backbone_student")
extra_config_key = _edit_torch(lambda obj: obj["train_config"].update(teacher_dtype="fp8"), "extra_config_key")
missing_config_key = _edit_torch(lambda obj: obj["train_config"].pop("backbone"), "missing_config_key")
no_student = _edit_torch(lambda obj: obj.pop("student"), "no_student")


def build_cases() -> list[Case]:
    cases: list[Case] = []
    # ---- damaged files (one at a time)
    weights = _copied(lambda w: w.weights, "weights.pth", "weights")
    model = _copied(lambda w: w.model, "model.pt", "model")
    summary_s = _copied(lambda w: w.fake["summary"], "summary.csv", "summary")
    stats_f = _copied(lambda w: w.fake["stats"], "stats.csv", "stats")
    config = _copied(lambda w: Path(w.fake["config"]), "config.json", "config")
    manifest = _copied(lambda w: Path(w.fake["manifests"][0]), "brick.json", "manifests", as_list=True)
    for damage in FILE_DAMAGES + [as_torch]:
        cases.append(_file_case("smoke", "weights", damage, ERROR, weights))
        cases.append(_file_case("evaluate", "model", damage, ERROR, model))
    for damage in (other_backbone, extra_config_key, missing_config_key, no_student):
        cases.append(_file_case("evaluate", "model", damage, ERROR, model))
    # predict and export read the same model.pt (a copy alone: predict is given a number threshold)
    for damage in (empty, truncate, as_text, other_backbone, missing_config_key):
        cases.append(_file_case("predict", "model", damage, ERROR, _predict_model))
        cases.append(_file_case("export", "model", damage, ERROR, _predict_model))
    run_files = _run_folder_copy
    for damage in (empty, as_json_list):
        cases.append(_file_case("predict", "threshold", damage, ERROR, run_files("threshold.json")))
    for damage in (empty, truncate, as_text):   # an image that cannot be read is skipped, listed in the CSV
        cases.append(_file_case("predict", "image", damage, OK, _predict_image))
    # a checkpoint goes through the same loader as model.pt (above); each of these trains, so
    # one damage of each family: cut short, another kind of file, another network, intact
    for damage in (empty, as_text, other_backbone, unchanged):    # set aside and trained afresh / resumed
        cases.append(_file_case("train", "checkpoint", damage, OK, _checkpoint))
    for damage in FILE_DAMAGES:
        for command in ("stats", "report"):
            cases.append(_file_case(command, "summary", damage, ERROR, summary_s))
        cases.append(_file_case("report", "stats", damage, ERROR, stats_f))
        cases.append(_file_case("aggregate", "metrics", damage, ERROR, _run_copy("metrics.json")))
        cases.append(_file_case("aggregate", "train_json", damage, ERROR, _run_copy("train.json")))
    for damage in (empty, truncate, as_png, as_json_list):
        cases.append(_file_case("report", "config", damage, ERROR, config))
        cases.append(_file_case("report", "manifest", damage, ERROR, manifest))
    # ---- tables: a column removed, a cell of the wrong type, harmless changes
    for command in ("stats", "report"):
        for col in ("arm", "seed", "image_auroc", "aupro"):
            cases.append(_file_case(command, "summary", drop_column(col), ERROR, summary_s))
        for col, value in (("image_auroc", "abc"), ("seed", "x"), ("pixel_auroc", "0.9.1"), ("aupro", "true")):
            cases.append(_file_case(command, "summary", set_cell(col, value), ERROR, summary_s))
    # harmless changes: a missing value, a new text column (a full report takes seconds: stats only)
    for damage in (set_cell("image_auroc", "nan"), set_cell("gflops_total", ""), add_text_column):
        cases.append(_file_case("stats", "summary", damage, OK, summary_s))
    cases.append(_file_case("report", "summary", add_text_column, OK, summary_s))
    for col, value in (("p", "abc"), ("n", "many")):
        cases.append(_file_case("report", "stats", set_cell(col, value), ERROR, stats_f))
    cases.append(_file_case("report", "stats", drop_column("metric"), ERROR, stats_f))
    # ---- data files, as train / evaluate / prepare-data read them
    train_img = _data_file(lambda cat: _first(cat / "train" / "good"))
    test_img = _data_file(_defect_image)
    mask = _data_file(_defect_mask)
    for command, target, locate in (("train", "train_image", train_img), ("evaluate", "test_image", test_img),
                                    ("prepare-data", "mask", mask), ("evaluate", "mask", mask)):
        for damage in (empty, truncate, as_text, symlink_loop):
            cases.append(_file_case(command, target, damage, ERROR, locate))
    for damage, expect in ((png16, OK), (palette, OK), (transparent, ERROR)):
        cases.append(_file_case("prepare-data", "train_image", damage, expect, train_img))
    cases.append(_file_case("train", "train_image", png16, OK, train_img))
    cases.append(_file_case("prepare-data", "mask", alpha_only_mask, ERROR, mask))
    cases.append(_file_case("evaluate", "mask", alpha_only_mask, ERROR, mask))
    # ---- flags and setting keys: one bad value of a seeded-random kind each
    from rd import params
    from tests.helpers.params_cases import CATEGORY_KINDS, FLAGS, KINDS, SETTING_KINDS, setting_valid, valid

    rng = random.Random(SEED)
    for command, flag, rule in FLAGS:
        kinds = CATEGORY_KINDS if rule == "category" else KINDS
        bad = [k for k, t in kinds.items() if not valid(params.RULES[rule], t)]
        kind = rng.choice(bad)
        cases.append(_flag_case(command, flag, kinds[kind], kind))
    for key in params.SETTING_RULES:
        bad = [k for k, v in SETTING_KINDS.items() if not setting_valid(key, v)]
        kind = rng.choice(bad)
        cases.append(_flag_case("train", "--setting", json.dumps({key: SETTING_KINDS[kind]}), f"{key}-{kind}"))
    return cases


def _flag_case(command: str, flag: str, value: str, kind: str) -> Case:
    def prepare(case: Path, w: World) -> tuple[list[str], str]:
        argv = _argv(command, case, w)
        if flag in argv:
            i = argv.index(flag)
            end = i + 2
            while end < len(argv) and not argv[end].startswith("--"):
                end += 1   # nargs="+" flags
            argv[i + 1:end] = [value]
        else:
            argv[1:1] = [flag, value]
        return argv, flag if flag != "--setting" else kind.split("-")[0] + ":"

    return Case(command, f"{command}:{flag}:{kind}", prepare, ERROR, OUTPUTS[command])


CASES = build_cases()


# --------------------------------------------------------------------------- the check
def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def check_case(case: Case, w: World, tmp: Path) -> None:
    out = tmp / "out"
    out.mkdir(parents=True)
    (out / SENTINEL).write_text("from an earlier run\n")
    argv, needle = case.prepare(tmp, w)
    before = _files(out)
    res: Result = rd(*argv, cwd=tmp, timeout=240)
    assert "Traceback" not in res.stderr, f"{case.id}: traceback\n{res.stderr}"
    assert res.rc in (0, 2), f"{case.id}: exit {res.rc}\n{res.stderr}"
    after = _files(out)
    assert not [n for n in after if n.endswith(".tmp")], f"{case.id}: temporary files left: {sorted(after)}"
    if res.rc == 0:
        assert case.expect == OK, f"{case.id}: expected a clean error, got exit 0\n{res.stderr}"
        missing = [o for o in case.outputs if o not in after]
        assert not missing, f"{case.id}: exit 0 but {missing} missing"
        assert not [line for line in res.lines() if line.startswith("error")], f"{case.id}: exit 0 with errors\n{res.stderr}"
        return
    assert case.expect == ERROR, f"{case.id}: expected success, got\n{res.stderr}"
    errors = res.errors()
    assert len(errors) == 1, f"{case.id}: expected one error line, got\n{res.stderr}"
    assert errors[0].startswith("error: ") and " Fix: " in errors[0], f"{case.id}: {errors[0]}"
    assert needle in errors[0], f"{case.id}: {needle!r} not in {errors[0]!r}"
    assert after == {k: v for k, v in before.items() if k in after} and set(after) <= set(before), \
        f"{case.id}: the output folder changed: {sorted(set(after) - set(before))}"


def test_contract_table(world, tmp_path):
    """Every generated case, one process each; failures are collected and shown together."""
    start = time.perf_counter()
    failures, took = [], []
    for i, case in enumerate(CASES):
        t0 = time.perf_counter()
        try:
            check_case(case, world, tmp_path / f"c{i:03d}")
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0] + "\n    " + "\n    ".join(str(exc).splitlines()[1:4]))
        took.append((time.perf_counter() - t0, case.id))
    seconds = time.perf_counter() - start
    slowest = ", ".join(f"{cid} {t:.1f}s" for t, cid in sorted(took, reverse=True)[:5])
    per = {}
    for t, cid in took:
        per[cid.split(":")[0]] = per.get(cid.split(":")[0], 0.0) + t
    print(f"\ncontract: {len(CASES)} generated cases in {seconds:.1f} s; by command "
          + ", ".join(f"{c} {t:.0f}s" for c, t in sorted(per.items())) + f"; slowest: {slowest}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases broke the contract:\n" + "\n".join(failures)


def test_the_table_covers_every_command():
    commands = {c.command for c in CASES}
    assert {"prepare-data", "smoke", "complexity", "train", "evaluate", "aggregate", "stats", "report",
            "predict", "export"} <= commands
    assert len(CASES) >= 120, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)
