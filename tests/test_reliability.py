"""Reliability catalogue: what a user can get wrong, and how the tool answers.

Every bad-input case runs the real command line and must end the same way:

* exit status 2;
* exactly one non-empty stderr line starting with ``error:`` that names the problem and says
  ``Fix: ...`` (``warning: ...`` lines and training progress lines ``epoch i/n ...`` aside);
* no ``Traceback`` (that needs ``--debug``);
* no result file where a later step would trust it (the output file does not exist afterwards;
  a run folder that train/evaluate created before failing holds no file).

Speed: the catalogue has dozens of cases on a shared two-core machine, so most cases run in a
process forked from the warm forkserver of tests/helpers/reliability.py (its own process, stderr
and exit status, without the seconds of importing torch). Cases that depend on import-time state
(the offline Hugging Face switch) run ``python -m rd`` in a plain subprocess, and the config cases
run real Snakemake.

Not repeated here (see the other test files): the data-validation catalogue through
``prepare-data`` (test_data_errors.py), kill -9 + resume and determinism (test_train.py,
test_data.py), config checks in-process (test_workflow.py), report escaping (test_report*.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.reliability import (CAT, Result, Trigger, assert_clean_failure, no_files, rd, rd_subprocess,
                                      rd_until)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_train": 20, "n_test_good": 6, "n_per_defect": 3}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    from rd.data import prepare_category

    root = tmp_path_factory.mktemp("small")
    prepare_category("textures", root, CAT, seed=0, generate_options=SMALL)
    return root


def train_args(root: Path, out: Path, *extra: str, backbone: str = "resnet18", epochs: int = 1) -> list[str]:
    return ["train", "--data-root", str(root), "--category", CAT, "--backbone", backbone,
            "--image-size", "64", "--epochs", str(epochs), "--batch-size", "16", "--seed", "0",
            "--device", "cpu", "--threads", "1", *extra, "--out-dir", str(out)]


def eval_args(root: Path, model: Path, out: Path) -> list[str]:
    return ["evaluate", "--data-root", str(root), "--category", CAT, "--model", str(model),
            "--device", "cpu", "--threads", "1", "--out-dir", str(out)]


HOSTILE_NAME = "x; touch PWNED $(touch PWNED2) `touch PWNED3` 'q.png"


@pytest.fixture(scope="module")
def trained(small_root, tmp_path_factory) -> dict:
    """One real 1-epoch run through the CLI on a copy of the data that holds a stray Thumbs.db
    (policy: ignored with one warning) and a valid image with a shell-hostile file name."""
    work = tmp_path_factory.mktemp("trained")
    root = work / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    good = root / CAT / "train" / "good"
    (good / "Thumbs.db").write_bytes(b"\x00junk")
    shutil.copy2(good / "000.png", good / HOSTILE_NAME)
    run = work / "run"
    res = rd(*train_args(root, run), cwd=work)
    return {"root": root, "run": run, "model": run / "model.pt", "work": work, "result": res}


# --------------------------------------------------------------------------- policy cases that succeed
def test_non_image_file_is_ignored_with_one_warning(trained):
    res, work = trained["result"], trained["work"]
    assert res.rc == 0, res.stderr
    assert "Traceback" not in res.stderr and not res.errors(), res.stderr
    warns = res.warnings()
    assert len(warns) == 1 and "Ignored 1 non-image file(s)" in warns[0] and "Thumbs.db" in warns[0], res.stderr
    assert trained["model"].is_file()
    # the hostile name was read as data by Python, never given to a shell
    assert not any((work / n).exists() for n in ("PWNED", "PWNED2", "PWNED3"))
    assert not any(Path(p).exists() for p in ("PWNED", "PWNED2", "PWNED3"))


# --------------------------------------------------------------------------- bad data through train / evaluate
def _copy(small_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(small_root / CAT, root / CAT)
    return root


def _rm_train_good(cat: Path) -> Path:
    shutil.rmtree(cat / "train" / "good")
    return cat / "train" / "good"


def _empty_train(cat: Path) -> Path:
    for p in (cat / "train" / "good").iterdir():
        p.unlink()
    return cat / "train" / "good"


def _truncated_train_png(cat: Path) -> Path:
    path = cat / "train" / "good" / "003.png"
    path.write_bytes(path.read_bytes()[:300])
    return path


def _rm_category(cat: Path) -> Path:
    shutil.rmtree(cat)
    return cat


TRAIN_DATA_CASES = {
    "missing_category": (_rm_category, "does not exist"),
    "no_train_good": (_rm_train_good, "Wrong layout"),
    "empty_train_set": (_empty_train, "Empty train set"),
    "truncated_png": (_truncated_train_png, "Cannot read image"),
}


def test_missing_dataset_root(tmp_path):
    root, run = tmp_path / "nowhere", tmp_path / "run"
    assert_clean_failure(rd(*train_args(root, run), cwd=tmp_path), str(root), "does not exist")
    assert no_files(run)


@pytest.mark.parametrize("case", list(TRAIN_DATA_CASES))
def test_bad_data_train(case, small_root, tmp_path):
    root = _copy(small_root, tmp_path)
    breaker, needle = TRAIN_DATA_CASES[case]
    path = breaker(root / CAT)
    run = tmp_path / "run"
    assert_clean_failure(rd(*train_args(root, run), cwd=tmp_path), str(path), needle,
                         absent=(run / "model.pt", run / "checkpoint.pt"))
    assert no_files(run)


def _defect_without_mask(cat: Path) -> Path:
    (cat / "ground_truth" / "hole" / "001_mask.png").unlink()
    return cat / "test" / "hole" / "001.png"


def _mask_other_size(cat: Path) -> Path:
    from PIL import Image

    mask = cat / "ground_truth" / "stain" / "000_mask.png"
    Image.new("L", (64, 64)).save(mask)
    return mask


def _corrupt_test_png(cat: Path) -> Path:
    path = cat / "test" / "good" / "001.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    return path


EVAL_DATA_CASES = {
    "defect_without_mask": (_defect_without_mask, "has no mask"),
    "mask_other_size": (_mask_other_size, "64x64"),
    "corrupt_png": (_corrupt_test_png, "Cannot read image"),
}


@pytest.mark.parametrize("case", list(EVAL_DATA_CASES))
def test_bad_data_evaluate(case, trained, small_root, tmp_path):
    root = _copy(small_root, tmp_path)
    breaker, needle = EVAL_DATA_CASES[case]
    path = breaker(root / CAT)
    out = tmp_path / "eval"
    assert_clean_failure(rd(*eval_args(root, trained["model"], out), cwd=tmp_path), str(path), needle,
                         absent=(out / "metrics.json",))
    assert no_files(out)


# --------------------------------------------------------------------------- settings and backbones (CLI)
@pytest.mark.parametrize("setting,needles", [
    ('{"optimiser": "adam", "lr": 0.005}', ("optimiser: unknown setting key", "Did you mean 'optimizer'?")),
    ('{"optimizer": "adam", "lr": "fast"}', ("lr: must be a finite number > 0, got 'fast'",)),
    ('{"optimizer": "adamm", "lr": 0.005}', ("optimizer: must be one of adam, adamw, sgd, got 'adamm'",)),
], ids=["unknown_key", "wrong_type", "unknown_value"])
def test_bad_setting(setting, needles, small_root, tmp_path):
    run = tmp_path / "run"
    assert_clean_failure(rd(*train_args(small_root, run, "--setting", setting), cwd=tmp_path), *needles,
                         absent=(run / "model.pt",))
    assert no_files(run)


@pytest.mark.parametrize("command", ["smoke", "train"])
def test_unknown_backbone_suggests_timm_names(command, small_root, tmp_path):
    out = tmp_path / "out"
    if command == "smoke":
        args = ["smoke", "--backbone", "convnext_pikko", "--image-sizes", "64", "--out", str(out / "s.json")]
    else:
        args = train_args(small_root, out, backbone="convnext_pikko")
    line = assert_clean_failure(rd(*args, cwd=tmp_path), "Unknown backbone 'convnext_pikko'", "did you mean")
    assert "convnext_pico" in line.split("Fix:")[1]
    assert no_files(out)


def test_comparison_naming_a_missing_arm(tmp_path):
    summary = tmp_path / "summary.csv"
    rows = ["category,seed,arm,backbone,setting,image_auroc,pixel_auroc,aupro"]
    rows += [f"{c},{s},{a},{a.split('/')[0]},{a.split('/')[1]},0.{s}{len(c)},0.9,0.8"
             for c in ("brick", "grass") for s in (0, 1) for a in ("resnet18/baseline", "convnext_pico/baseline")]
    summary.write_text("\n".join(rows) + "\n")
    out = tmp_path / "stats.csv"
    assert_clean_failure(rd("stats", "--summary", str(summary), "--comparison", "resnet18/baseline",
                            "convnext_pico/tuned", "--out", str(out), cwd=tmp_path),
                         "'convnext_pico/tuned'", "has no run in the summary", absent=(out,))


# --------------------------------------------------------------------------- teacher weights
def test_weights_file_missing(tmp_path):
    out = tmp_path / "smoke.json"
    missing = tmp_path / "resnet18_imagenet.pth"
    assert_clean_failure(rd("smoke", "--backbone", "resnet18", "--weights", str(missing), "--image-sizes", "64",
                            "--out", str(out), cwd=tmp_path), str(missing), "does not exist", absent=(out,))


def test_weights_for_another_architecture_name_first_mismatch(tmp_path):
    """convnext_femto's weights given for convnext_atto: same tensor names, other widths."""
    import timm
    import torch

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in timm.create_model("convnext_femto").state_dict().items()}
    weights = tmp_path / "convnext_femto.pth"
    torch.save({k: torch.zeros(s) for k, s in shapes.items()}, weights)
    out = tmp_path / "smoke.json"
    assert_clean_failure(rd("smoke", "--backbone", "convnext_atto", "--weights", str(weights), "--image-sizes", "64",
                            "--out", str(out), cwd=tmp_path),
                         str(weights), "do not fit convnext_atto", "'stem.0.weight'", "(48, 3, 4, 4)",
                         "(40, 3, 4, 4)", absent=(out,))


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_pico"])
def test_imagenet_weights_unavailable_offline(tmp_path, backbone):
    """A fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE when it is imported (set in a
    process that has imported it already, the hub would try the network and time out)."""
    hf = tmp_path / "empty_hf_home"
    hf.mkdir()
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub"),
           "HUGGINGFACE_HUB_CACHE": str(hf / "hub"), "TORCH_HOME": str(tmp_path / "torch")}
    out = tmp_path / "smoke.json"
    tag = {"resnet18": "resnet18.tv_in1k", "convnext_pico": "convnext_pico.d1_in1k"}[backbone]
    assert_clean_failure(rd_subprocess("smoke", "--backbone", backbone, "--weights", "imagenet",
                                       "--image-sizes", "64", "--out", str(out), cwd=tmp_path, env=env),
                         f"ImageNet weights for {tag} could not be had", "HF_HUB_OFFLINE=1", absent=(out,))


class RunsCode:
    """Unpickling this would call os.mkdir(marker): the stand-in for any code in a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_weights_pickle_that_runs_code_is_refused(tmp_path):
    import torch

    marker = tmp_path / "code_ran"
    weights = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": RunsCode(marker)}, weights)
    out = tmp_path / "smoke.json"
    assert_clean_failure(rd("smoke", "--backbone", "resnet18", "--weights", str(weights), "--image-sizes", "64",
                            "--out", str(out), cwd=tmp_path), f"Refusing to load {weights}", absent=(out, marker))


# --------------------------------------------------------------------------- training failures
def test_nan_loss_stops_without_model(small_root, tmp_path):
    run = tmp_path / "run"
    res = rd(*train_args(small_root, run, "--setting", '{"optimizer": "sgd", "lr": 1e38}', epochs=2), cwd=tmp_path)
    assert_clean_failure(res, "Training loss became", "no model was written", "lower the learning rate",
                         absent=(run / "model.pt", run / "train.json", run / "history.csv"))


def _under_a_file(tmp_path: Path) -> Path:
    """A folder that cannot be created even by root: its parent is a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    return blocker / "sub"


@pytest.mark.parametrize("command", ["prepare-data", "smoke", "train", "evaluate"])
def test_output_folder_cannot_be_written(command, trained, small_root, tmp_path):
    out = _under_a_file(tmp_path)
    args = {
        "prepare-data": ["prepare-data", "--dataset", "mvtec", "--root", str(small_root), "--category", CAT,
                         "--out", str(out / "m.json")],
        "smoke": ["smoke", "--backbone", "resnet18", "--image-sizes", "64", "--out", str(out / "s.json")],
        "train": train_args(small_root, out),
        "evaluate": eval_args(small_root, trained["model"], out),
    }[command]
    assert_clean_failure(rd(*args, cwd=tmp_path), str(out), "Cannot create output folder", absent=(out,))


def test_disk_full_while_saving(small_root, tmp_path):
    """Writes beyond 2 MB fail (RLIMIT_FSIZE, like a full disk or quota): the checkpoint after
    epoch 1 cannot be saved. One clear line, nothing half-written left."""
    run = tmp_path / "run"
    res = rd(*train_args(small_root, run, "--checkpoint-every", "0", epochs=2), cwd=tmp_path, fsize=2 * 2**20)
    assert_clean_failure(res, f"Cannot write {run / 'checkpoint.pt'}", "file-size limit",
                         absent=(run / "model.pt", run / "checkpoint.pt", run / "train.json"))
    assert not list(run.glob(".*.tmp")), list(run.iterdir())


def test_disk_full_while_evaluating_publishes_nothing(trained, small_root, tmp_path):
    """An evaluation that cannot write its outputs (no file may exceed 8 kB) must not leave an
    earlier metrics.json (written last, it marks a complete evaluation) next to new outputs: the
    outputs are one set, so the earlier evaluation stays exactly as it was and nothing new appears."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"image_auroc": 0.99}\n')   # from an earlier evaluation
    res = rd(*eval_args(small_root, trained["model"], out), cwd=tmp_path, fsize=8192)
    assert_clean_failure(res, f"Cannot write {out}", "file-size limit", absent=(out / "scores.csv",))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"], list(out.iterdir())
    assert (out / "metrics.json").read_text() == '{"image_auroc": 0.99}\n'


def test_ctrl_c_one_line_then_rerun_resumes(small_root, tmp_path):
    """Ctrl-C during training: exit 130 with one line, no model.pt, the last finished epoch's
    checkpoint kept; the same command again resumes from it and finishes."""
    import signal

    run = tmp_path / "run"
    args = train_args(small_root, run, "--checkpoint-every", "0", epochs=4)
    # Ctrl-C as "epoch 2/4" is printed: the checkpoint of epoch 1 is on disk, that of epoch 2 not yet begun
    res = rd_until(Trigger(signal.SIGINT, text="epoch 2/4"), *args, cwd=tmp_path)
    assert res.rc == 130 and "Traceback" not in res.stderr, res.stderr
    assert res.errors() == ["error: interrupted; outputs written so far are complete, rerun to continue."], res.stderr
    assert (run / "checkpoint.pt").is_file() and not (run / "model.pt").exists()
    again = rd(*args, cwd=tmp_path)
    assert again.rc == 0 and f"resuming from {run / 'checkpoint.pt'} after epoch 1" in again.stderr, again.stderr
    assert "epoch 1/4" not in again.stderr and "epoch 2/4" in again.stderr, again.stderr
    assert (run / "model.pt").is_file() and not (run / "checkpoint.pt").exists()


def test_corrupt_checkpoint_is_set_aside(small_root, tmp_path):
    """A damaged checkpoint must not block the run forever: it is moved to checkpoint.pt.damaged
    with one warning naming it, and training starts from epoch 1 (the result is the same)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    res = rd(*train_args(small_root, run), cwd=tmp_path)
    assert res.rc == 0 and "Traceback" not in res.stderr and not res.errors(), res.stderr
    warns = [w for w in res.warnings() if "checkpoint.pt" in w]
    assert len(warns) == 1 and str(run / "checkpoint.pt.damaged") in warns[0] and "epoch 1" in warns[0], res.stderr
    assert (run / "checkpoint.pt.damaged").read_bytes() == b"PK\x03\x04 not really a zip"
    assert (run / "model.pt").is_file() and not (run / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- model.pt given to evaluate
def _tampered(model: Path, dest: Path, **changes) -> Path:
    import torch

    ckpt = torch.load(model, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, dest)
    return dest


def _model_case(name: str, model: Path, tmp_path: Path) -> tuple[Path, tuple[str, ...], tuple[Path, ...]]:
    import torch

    dest = tmp_path / "model.pt"
    if name == "missing":
        return dest, (str(dest), "does not exist"), ()
    if name == "truncated":
        data = model.read_bytes()
        dest.write_bytes(data[: len(data) // 2])
        return dest, (str(dest), "corrupt or truncated"), ()
    if name == "pickle_runs_code":
        marker = tmp_path / "code_ran"
        ckpt = torch.load(model, weights_only=True)
        ckpt["payload"] = RunsCode(marker)
        torch.save(ckpt, dest)
        return dest, (f"Refusing to load {dest}",), (marker,)
    if name == "teacher_fingerprint":
        _tampered(model, dest, teacher_fingerprint="0" * 64)
        return dest, ("differs from the one the student was trained against",), ()
    if name == "not_an_rd_model":
        torch.save({"conv1.weight": torch.zeros(1)}, dest)
        return dest, ("is not a model written by `python -m rd train`",), ()
    raise ValueError(name)


@pytest.mark.parametrize("case", ["missing", "truncated", "pickle_runs_code", "teacher_fingerprint", "not_an_rd_model"])
def test_bad_model_file(case, trained, small_root, tmp_path):
    model, needles, absent = _model_case(case, trained["model"], tmp_path)
    out = tmp_path / "eval"
    assert_clean_failure(rd(*eval_args(small_root, model, out), cwd=tmp_path), *needles,
                         absent=(out / "metrics.json", *absent))
    assert no_files(out)


def test_debug_shows_the_traceback(tmp_path):
    res = rd("--debug", *train_args(tmp_path / "nowhere", tmp_path / "run"), cwd=tmp_path)
    assert res.rc == 2 and "Traceback" in res.stderr and res.lines()[-1].startswith("error: ")


def test_disk_full_while_generating_data(tmp_path):
    """The embedded dataset cannot be written (no file may exceed 8 kB): one line, no category
    folder, no manifest."""
    root, manifest = tmp_path / "data", tmp_path / "m.json"
    res = rd("prepare-data", "--dataset", "textures", "--root", str(root), "--category", CAT, "--n-train", "4",
             "--n-test-good", "2", "--n-per-defect", "1", "--out", str(manifest), cwd=tmp_path, fsize=8192)
    assert_clean_failure(res, "Cannot write", f"--root {root}", "file-size limit", absent=(manifest, root / CAT))
    assert not root.exists() or not list(root.iterdir()), list(root.iterdir())  # no half-built category


# --------------------------------------------------------------------------- config errors through Snakemake
def _workflow(dest: Path) -> Path:
    """A copy of the workflow files; rules run the repo's `rd` through PYTHONPATH."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml", "environment.yml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snakemake(wd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=wd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _full_config(path: Path, **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# test_workflow.py checks each config problem in-process and three through Snakemake; here the
# catalogue's own config cases run through real Snakemake, several problems per run (all are
# reported at once, so the user fixes them in one go).
@pytest.mark.parametrize("overrides,expected", [
    (["epochz=3", "epochs=three", "seeds=[]"],
     ["epochz: unknown key. Did you mean 'epochs'?", "epochs: 'three' is not of type 'integer'",
      "seeds: [] should be non-empty"]),
    (["arms=[resnet18/baseline,resnet18/tunde]"],
     ["arms: 'resnet18/tunde' names setting 'tunde', which is not defined under `settings`",
      "Did you mean 'tuned'?",
      "comparisons[1]: 'convnext_pico/baseline' is not one of the arms"]),
    # what JSON schema lets through and every job would fail on: in the same list, all at once
    (["batch_size=1", "settings={baseline: {optimizer: adam, lr: .nan}, "
      "tuned: {optimizer: adamw, lr: 0.001, min_lr: 0.01, warmup_epochs: 9}}"],
     ["batch_size: 1 is less than the minimum of 2", "settings.baseline.lr: must be a finite number > 0, got nan",
      "settings.tuned.min_lr: 0.01 is above lr 0.001", "settings.tuned.warmup_epochs: 9.0 is more than the 4"]),
], ids=["schema", "cross_references", "rules"])
def test_bad_config_through_snakemake(overrides, expected, tmp_path):
    wd = _workflow(tmp_path)
    proc = snakemake(wd, "--config", *overrides)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid configuration (nothing was run)" in out and "Fix:" in out and "Traceback" not in out, out
    for line in expected:
        assert line in out, f"{line!r} not in:\n{out}"
    assert not (wd / "results").exists() and not (wd / "logs").exists() and not (wd / "data").exists()


def test_unknown_backbone_through_snakemake(tmp_path):
    """A backbone name timm does not know passes the schema (any timm name is allowed) and stops
    in its smoke job, which gates training: one line with the closest timm names in the log,
    no smoke result, no training started."""
    wd = _workflow(tmp_path)
    cfg = _full_config(wd / "bad.yaml", backbones={"resnet18": {"weights": "none"}, "convnext_pikko": {"weights": "none"}},
                       arms=["resnet18/baseline", "convnext_pikko/baseline"],
                       comparisons=[["resnet18/baseline", "convnext_pikko/baseline"]])
    proc = snakemake(wd, "results/smoke/convnext_pikko.json", "--configfile", cfg.name)  # target first: --configfile takes several
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Error in rule smoke" in out, out
    log = (wd / "logs/smoke/convnext_pikko.log").read_text()
    res = Result(2, "", log)
    assert "Traceback" not in log and len(res.errors()) == 1, log
    assert res.errors()[0].startswith("error: Unknown backbone 'convnext_pikko'") and "convnext_pico" in log, log
    assert not (wd / "results/smoke/convnext_pikko.json").exists()
    assert not (wd / "results/runs").exists()


HOSTILE_DIR = "it's $(touch PWNED) `touch PWNED2`; touch PWNED3 & data"


def test_hostile_dataset_path_never_reaches_a_shell(small_root, tmp_path):
    """A user's dataset root with quotes, $(...), backticks, ; and & in its name: the real
    prepare_data rule validates it (paths are shell-quoted with :q), nothing is executed."""
    root = tmp_path / HOSTILE_DIR
    shutil.copytree(small_root / CAT, root / CAT)
    wd = _workflow(tmp_path / "wf")
    cfg = _full_config(wd / "mine.yaml", dataset={"name": "mvtec", "root": str(root), "categories": [CAT]})
    proc = snakemake(wd, f"results/data/mvtec/{CAT}.json", "--configfile", cfg.name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = yaml.safe_load((wd / f"results/data/mvtec/{CAT}.json").read_text())
    assert manifest["root"] == str(root) and manifest["n_train"] == SMALL["n_train"]
    for folder in (wd, tmp_path, root, Path.cwd()):
        assert not any((folder / name).exists() for name in ("PWNED", "PWNED2", "PWNED3")), folder


# --------------------------------------------------------------------------- no shell anywhere
SHELL_CALLS = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|getstatusoutput\(|getoutput\(|"
                         r"create_subprocess_shell\(|os\.exec[lv]p?e?\(|pty\.spawn\(")


def test_rd_never_uses_a_shell():
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
            for p in sorted((REPO / "rd").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if SHELL_CALLS.search(line)]
    assert not hits, hits


# Placeholders a rule's shell command may use unquoted, and why they are safe there.
UNQUOTED_OK = {
    "wildcards.category": "wildcard_constraints: [A-Za-z0-9_.-]+",
    "wildcards.backbone": "wildcard_constraints: [A-Za-z0-9_.]+",
    "wildcards.setting": "wildcard_constraints: [A-Za-z0-9_.-]+",
    "wildcards.seed": "wildcard_constraints: [0-9]+",
    "threads": "an integer",
    "params.model": "schema pattern [A-Za-z0-9_]+ (or the backbone wildcard)",
    "params.student": "schema pattern [A-Za-z0-9_]+",
    "params.image_size": "schema integer", "params.epochs": "schema integer", "params.batch_size": "schema integer",
    "params.seed": "schema integer", "params.eval_every": "schema integer", "params.failure_cases": "schema integer",
    "params.sizes": "schema integers", "params.device": "schema pattern auto|cpu|cuda[:N]",
    "params.dataset": "schema enum textures|mvtec",
    "params.projection": "--projection + schema enum (none|orthonormal|guide)",
    "params.command": "shell-quoted already (rd.commands.shell = shlex.join): :q would quote it twice",
    "params.primary_metric": "checked against rd.metric_list by the config check (letters, digits, _)",
    "params.validation_fraction": "schema number in [0, 0.5]",
    "resources.stage_failure_cases": "schema integer",
    "params.student_output": "--student-output + schema enum relu|linear", "params.flags": "fixed flags", "params.generate": "--flag <int> pairs",
}


def _shell_commands(text: str) -> list[str]:
    """The string literal(s) under each `shell:` directive, concatenated."""
    import ast

    commands, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt.strip())
        commands.append(ast.literal_eval("(" + "\n".join(b for b in body if b) + ")"))
    return commands


def test_workflow_quotes_every_path_it_hands_to_a_shell():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    commands = [c for f in files for c in _shell_commands(f.read_text())]
    assert len(commands) >= 8, commands   # prepare_data, smoke, complexity, train, evaluate, aggregate, stats, report
    unquoted = sorted({m for c in commands for m in re.findall(r"(?<!\{)\{([^{}:]+)\}(?!\})", c)} - set(UNQUOTED_OK))
    assert not unquoted, f"quote these with :q (or justify them in UNQUOTED_OK): {unquoted}"
    for f in files:   # rules never call shell() from Python code either
        assert not re.search(r"(?<![\w.])shell\(", f.read_text()), f
    constraints = dict(re.findall(r"^\s+(\w+)=r\"([^\"]+)\",\s*$", (REPO / "Snakefile").read_text(), re.M))
    assert {"category", "backbone", "setting", "seed", "dataset"} <= set(constraints), constraints
    for name, pattern in constraints.items():
        # one character class repeated (category: a first character that is not a dot, then more)
        assert re.fullmatch(r"(\[[A-Za-z0-9_\\-]+\])?\[[A-Za-z0-9_.+\\-]+\][+*]", pattern), (name, pattern)


# --------------------------------------------------------------------------- second pass: signals, durability, tables
def test_sigterm_is_an_interruption_then_rerun_resumes(small_root, tmp_path):
    """SIGTERM (SLURM's time limit, kill) while the checkpoint of epoch 2 is being written (its
    temporary file just opened): one line, exit 143 (128 + SIGTERM), no temporary file left, the
    checkpoint of epoch 1 kept; the same command resumes after epoch 1."""
    import signal

    run = tmp_path / "run"
    args = train_args(small_root, run, "--checkpoint-every", "0", epochs=4)
    res = rd_until(Trigger(signal.SIGTERM, opens=".checkpoint.pt.*.tmp", nth=2), *args, cwd=tmp_path)
    assert res.rc == 143 and "Traceback" not in res.stderr, res.stderr
    assert res.errors() == ["error: terminated (SIGTERM); outputs written so far are complete, rerun to continue."], \
        res.stderr
    assert not list(run.glob(".*.tmp")), list(run.iterdir())
    assert (run / "checkpoint.pt").is_file() and not (run / "model.pt").exists()
    again = rd(*args, cwd=tmp_path)
    assert again.rc == 0 and f"resuming from {run / 'checkpoint.pt'} after epoch 1" in again.stderr, again.stderr
    assert (run / "model.pt").is_file()


def test_stale_temporaries_of_a_killed_run_are_cleared(small_root, tmp_path):
    """kill -9 / power loss leaves `.checkpoint.pt.<random>.tmp`: the next start removes it."""
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".checkpoint.pt.k2j4h1x0.tmp"
    stale.write_bytes(b"half a checkpoint")
    res = rd(*train_args(small_root, run), cwd=tmp_path)
    assert res.rc == 0 and not stale.exists(), res.stderr
    assert any("removed 1 temporary file(s)" in w for w in res.warnings()), res.stderr


def test_atomic_writes_are_flushed_to_disk(tmp_path, monkeypatch):
    """fsync of the file before the rename and of its folder after it (power loss)."""
    from rd import files

    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    files.write_text(tmp_path / "out.txt", "x\n")
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / ".out.txt.")) and synced[1] == str(tmp_path)


@pytest.mark.parametrize("code,needle", [(28, "the disk is full"), (122, "quota"), (13, "permissions"),
                                         (30, "read-only"), (21, "a folder has the output's name")])
def test_write_errors_name_their_cause(code, needle):
    from rd.files import write_failed

    line = str(write_failed("out/x.json", OSError(code, os.strerror(code))))
    assert needle in line and os.strerror(code) in line and " Fix: " in line, line


def _summary_file(tmp_path: Path, **cells) -> Path:
    """A small valid summary (2 arms x 2 categories x 2 seeds), some cells replaced."""
    rows = ["category,seed,arm,backbone,setting,image_auroc,pixel_auroc,aupro"]
    for c in ("brick", "grass"):
        for s in (0, 1):
            for a in ("resnet18/baseline", "convnext_pico/baseline"):
                rows.append(f"{c},{s},{a},{a.split('/')[0]},baseline,0.{5 + s}{len(a)},0.9{s},0.8{s}")
    text = "\n".join(rows) + "\n"
    for old, new in cells.items():
        text = text.replace(old, new, 1)
    path = tmp_path / "summary.csv"
    path.write_text(text)
    return path


def _stats(summary: Path, tmp_path: Path) -> Result:
    return rd("stats", "--summary", str(summary), "--comparison", "resnet18/baseline", "convnext_pico/baseline",
              "--out", str(tmp_path / "stats.csv"), cwd=tmp_path)


def test_a_cell_that_is_not_a_number_is_named(tmp_path):
    """Before: coerced to NaN, the run dropped with a misleading "without a partner" note."""
    summary = _summary_file(tmp_path, **{"0.517": "0.5l7"})
    assert_clean_failure(_stats(summary, tmp_path), f"{summary}, line 2, column 'image_auroc': '0.5l7' is not a number",
                         absent=(tmp_path / "stats.csv",))


def test_a_missing_core_metric_column_is_an_error(tmp_path):
    summary = tmp_path / "summary.csv"
    import pandas as pd

    pd.read_csv(_summary_file(tmp_path)).drop(columns=["aupro"]).to_csv(summary, index=False)
    assert_clean_failure(_stats(summary, tmp_path), "lacks the column(s) aupro", absent=(tmp_path / "stats.csv",))


def test_an_all_nan_metric_is_reported_as_nan_with_a_note(tmp_path):
    import pandas as pd

    frame = pd.read_csv(_summary_file(tmp_path))
    frame["aupro"] = float("nan")
    frame.loc[0, "pixel_auroc"] = float("nan")   # one run without a value: dropped with its partner, said so
    summary = tmp_path / "summary.csv"
    frame.to_csv(summary, index=False)
    res = _stats(summary, tmp_path)
    assert res.rc == 0, res.stderr
    st = pd.read_csv(tmp_path / "stats.csv", keep_default_na=False)
    across = st[st["reading"] == "across_categories"].set_index("metric")
    assert across.loc["aupro", "mean_diff"] == "" and "all NaN in the summary" in across.loc["aupro", "note"]
    note = across.loc["pixel_auroc", "note"]
    assert "1 run(s) without a pixel_auroc value (NaN) dropped" in note and "without a partner" not in note, note


def test_only_the_commands_own_temporaries_are_cleared(tmp_path):
    from rd import files

    (tmp_path / ".metrics.json.abc.tmp").write_text("x")
    (tmp_path / ".summary.csv.abc.tmp").write_text("another job's")
    removed = files.clear_stale_temporaries(tmp_path, ("metrics.json", "curves.json"))
    assert removed == [tmp_path / ".metrics.json.abc.tmp"] and (tmp_path / ".summary.csv.abc.tmp").exists()
