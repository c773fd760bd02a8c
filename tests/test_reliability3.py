"""Reliability, third pass: expected failures end in one line, numbers
read back are checked finite, a command's outputs are published as a set, and predict / the
readers enumerate their inputs exactly.

Each case runs the real command line in-process (``rd.cli.main``: exit status and stderr as
``python -m rd`` gives them) or the library function the command calls, on one tiny trained
run (64 px, 1 epoch) shared by the module.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rd import files
from rd.cli import main
from rd.errors import RDError

CAT = "brick"
LATIN1 = os.fsdecode(b"caf\xe9.png")   # a Latin-1 name on a UTF-8 system: 'caf\udce9.png'


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained and evaluated run of a tiny embedded category."""
    from rd.data import prepare_category
    from rd.evaluate import evaluate_run
    from rd.run import TrainConfig
    from rd.train import train

    base = tmp_path_factory.mktemp("rel3")
    prepare_category("textures", base / "data", CAT, seed=0,
                     generate_options={"n_train": 12, "n_test_good": 4, "n_per_defect": 2, "size": 64})
    out = base / "run"
    train(TrainConfig(data_root=str(base / "data"), category=CAT, backbone="resnet18", image_size=64, epochs=1,
                      batch_size=8, seed=0, device="cpu", threads=1), out)
    evaluate_run(out / "model.pt", data_root=str(base / "data"), category=CAT, out_dir=out, device="cpu")
    return out


def _data(run: Path) -> Path:
    return run.parent / "data"


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def cli(capsys, *argv: str) -> tuple[int, list[str]]:
    """``python -m rd *argv`` in-process: (exit status, stderr lines that are not warnings or progress)."""
    rc = main(list(argv))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning: ")
             and not ln.startswith("epoch ") and "img/s" not in ln and not ln.startswith("predict: ")]
    return rc, lines


def one_error(rc: int, lines: list[str], *needles: str) -> str:
    assert rc == 2 and len(lines) == 1, (rc, lines)
    line = lines[0]
    assert line.startswith("error: ") and " Fix: " in line and "Traceback" not in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _predict(capsys, run: Path, out: Path, *images: str | Path) -> tuple[int, list[str]]:
    return cli(capsys, "predict", str(run), *map(str, images), "--out", str(out), "--device", "cpu")


def _nan_student(run: Path, dest: Path) -> Path:
    """A copy of the run whose model.pt has one NaN in a student tensor (as a diverged run has)."""
    dest = _copy_run(run, dest)
    ckpt = torch.load(dest / "model.pt", weights_only=True)
    key = next(k for k, t in ckpt["student"].items() if t.is_floating_point())
    ckpt["student"][key].view(-1)[0] = float("nan")
    torch.save(ckpt, dest / "model.pt")
    return dest


# --------------------------------------------------------------------------- 3. one place for expected failures
def test_latin1_file_name_is_scored_and_written(run, tmp_path, capsys):
    """A Latin-1 name: scored; predictions.csv stays valid UTF-8 and shows the odd byte as \\xe9."""
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy(_data(run) / CAT / "test" / "good" / "000.png", images / LATIN1)
    rc, lines = _predict(capsys, run, tmp_path / "p", images)
    assert rc == 0 and not lines, lines
    text = (tmp_path / "p" / "predictions.csv").read_bytes().decode("utf-8")   # strict: valid UTF-8
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv", keep_default_na=False)
    assert frame.path.tolist() == [str(images / "caf\\xe9.png")] and frame.decision[0] in ("good", "anomalous"), text
    assert (tmp_path / "p" / "figures" / LATIN1).is_file()


def test_latin1_file_name_in_a_dataset_validates(run, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(_data(run) / CAT, root / CAT)
    shutil.copy(root / CAT / "train" / "good" / "000.png", root / CAT / "train" / "good" / LATIN1)
    rc, lines = cli(capsys, "prepare-data", "--dataset", "mvtec", "--root", str(root), "--category", CAT,
                    "--out", str(tmp_path / "m.json"))
    assert rc == 0 and not lines, lines
    manifest = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert manifest["n_train"] == 13 and len(manifest["file_list_sha256"]) == 64, manifest


def test_a_folder_where_the_output_file_goes_is_one_line_before_the_work(run, tmp_path, capsys):
    out = tmp_path / "p"
    (out / "predictions.csv").mkdir(parents=True)
    rc, lines = _predict(capsys, run, out, _data(run) / CAT / "test" / "good")
    one_error(rc, lines, "predictions.csv", "Is a directory", "a folder has the output's name")
    assert not (out / "figures").exists()


def test_a_folder_where_a_train_output_goes_publishes_nothing(run, tmp_path, capsys):
    """train.json is a folder: one line, and neither model.pt nor history.csv appears."""
    out = tmp_path / "t"
    (out / "train.json").mkdir(parents=True)
    rc, lines = cli(capsys, "train", "--data-root", str(_data(run)), "--category", CAT, "--backbone", "resnet18",
                    "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                    "--out-dir", str(out))
    one_error(rc, lines, "train.json", "Is a directory")
    assert not (out / "model.pt").exists() and not (out / "history.csv").exists()
    assert not list(out.glob(".*.tmp"))


def test_export_of_nan_weights_is_one_line(run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    bad = _nan_student(run, tmp_path / "bad")
    rc, lines = cli(capsys, "export", str(bad), "--out", str(tmp_path / "m.onnx"))
    one_error(rc, lines, "NaN or infinite", "retrain")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("exc,needles", [
    (PermissionError(errno.EACCES, "Permission denied", "/x/y.csv"), ("/x/y.csv", "Permission denied", "permissions")),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out/m.pt"), ("out/m.pt", "a folder has the output's name")),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"), ("a/b", "a file stands where a folder")),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "l"), ("symbolic link",)),
    (UnicodeEncodeError("utf-8", LATIN1, 3, 4, "surrogates not allowed"), ("cannot be encoded", "caf\\\\udce9", "UTF-8")),
    (UnicodeDecodeError("utf-8", b"caf\xe9", 3, 4, "invalid continuation byte"), ("cannot be decoded", "UTF-8")),
    (OverflowError("Python int too large to convert to C long"), ("out of range",)),
])
def test_expected_failures_map_to_one_line(exc, needles):
    error = files.user_error(exc, "predict", ["--out p"])
    assert isinstance(error, RDError) and " Fix: " in str(error) and "\n" not in str(error), error
    for needle in needles:
        assert needle in str(error), (needle, str(error))


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("k"), OSError(errno.EBADF, "Bad file descriptor")])
def test_bugs_keep_their_traceback(exc):
    assert files.user_error(exc, "train") is None


def test_a_file_system_error_anywhere_in_a_command_is_one_line(run, tmp_path, capsys, monkeypatch):
    """An OSError raised deep inside a command (here: reading the run) becomes one line."""
    import rd.use.predict

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied", str(run / "model.pt"))

    monkeypatch.setattr(rd.use.predict, "resolve_run", denied)
    rc, lines = _predict(capsys, run, tmp_path / "p", _data(run) / CAT / "test" / "good")
    one_error(rc, lines, "model.pt", "Permission denied")


@pytest.mark.parametrize("name", ["cost $5 and $\\frac{", "$a$", "$$", "x_$\\alpha"])
def test_names_with_dollars_are_drawn_as_literal_text(name):
    """matplotlib would parse `$...$` as mathtext (an error, or an italic a instead of `$a$`)."""
    from rd.report.figures import new_figure, png_bytes

    fig = new_figure(3, 2)
    ax = fig.add_subplot()
    ax.plot([0, 1], label=name)
    ax.set_title(name)
    ax.set_xticks([0, 1], [name, "ok"])
    ax.legend()
    assert png_bytes(fig).startswith(b"\x89PNG")
    from matplotlib.text import Text

    assert all(not t._parse_math for t in fig.findobj(Text))


# --------------------------------------------------------------------------- 4. numbers read back are finite
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_threshold_file_is_one_line(value, run, tmp_path, capsys):
    bad = _copy_run(run, tmp_path / "r")
    data = json.loads((bad / "threshold.json").read_text())
    (bad / "threshold.json").write_text(json.dumps(data).replace(str(data["value"]), value))
    rc, lines = _predict(capsys, bad, tmp_path / "p", _data(run) / CAT / "test")
    one_error(rc, lines, "threshold.json", "not a finite number")
    assert not (tmp_path / "p" / "predictions.csv").exists()


def test_non_finite_f1max_threshold_is_one_line(run, tmp_path, capsys):
    bad = _copy_run(run, tmp_path / "r")
    metrics = json.loads((bad / "metrics.json").read_text())
    metrics["image_f1max_threshold"] = float("nan")
    (bad / "metrics.json").write_text(json.dumps(metrics))
    rc, lines = cli(capsys, "predict", str(bad), str(_data(run) / CAT / "test"), "--out", str(tmp_path / "p"),
                    "--threshold", "f1max", "--device", "cpu")
    one_error(rc, lines, "metrics.json", "not a finite number")


def test_nan_student_weights_are_refused_not_called_good(run, tmp_path, capsys):
    bad = _nan_student(run, tmp_path / "bad")
    rc, lines = _predict(capsys, bad, tmp_path / "p", _data(run) / CAT / "test")
    one_error(rc, lines, "model.pt", "NaN or infinite", "retrain")
    assert not (tmp_path / "p" / "predictions.csv").exists()
    rc, lines = cli(capsys, "evaluate", "--data-root", str(_data(run)), "--category", CAT, "--model",
                    str(bad / "model.pt"), "--device", "cpu", "--out-dir", str(tmp_path / "e"))
    one_error(rc, lines, "NaN or infinite")


def test_non_finite_maps_are_an_error_not_a_score(run):
    """Weights finite, maps not (an input the network overflows on): no NaN score reaches a decision."""
    from rd.method.inference import predict
    from rd.run import load_model

    model, cfg = load_model(run / "model.pt")
    x = torch.full((2, 3, 64, 64), float("inf"))
    with pytest.raises(RDError, match="NaN or infinite anomaly maps for 2 of 2"):
        predict(model, x, 64, "cpu")


def test_json_is_strict(tmp_path):
    files.write_json(tmp_path / "x.json", {"threshold": float("nan"), "v": [1.5, float("inf")], "n": np.float64(2)})
    text = (tmp_path / "x.json").read_text()

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(text, parse_constant=refuse) == {"threshold": None, "v": [1.5, None], "n": 2.0}


def test_every_json_writer_goes_through_the_strict_one():
    """No module writes a JSON file with NaN allowed: a json.dump(s) into a file outside rd/files.py
    says allow_nan=False (the others are for hashing or inline text)."""
    rd_dir = Path(__file__).resolve().parents[1] / "rd"
    offenders = []
    for path in rd_dir.rglob("*.py"):
        if path.name == "files.py" and path.parent == rd_dir:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            writes = "json.dump(" in line or ("json.dumps(" in line and "write_text" in line)
            if writes and "allow_nan=False" not in line:
                offenders.append(f"{path.relative_to(rd_dir)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_export_threshold_is_finite_in_strict_json(run, tmp_path):
    pytest.importorskip("onnxruntime")
    from rd.use.export import export_onnx

    export_onnx(run, tmp_path / "m.onnx")
    meta = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda t: pytest.fail(t))
    assert isinstance(meta["threshold"], float) and np.isfinite(meta["threshold"])


def test_an_infinite_table_cell_is_named(tmp_path):
    (tmp_path / "s.csv").write_text("category,arm,image_auroc\nbrick,a/b,0.9\ntile,a/b,inf\n")
    with pytest.raises(RDError, match=r"line 3, column 'image_auroc': 'inf' is infinite"):
        files.read_table(tmp_path / "s.csv", "Summary", "aggregate", ["image_auroc"], {"category", "arm"})
    (tmp_path / "s.csv").write_text("category,arm,image_auroc\nbrick,a/b,0.9\ntile,a/b,nan\n")
    assert np.isnan(files.read_table(tmp_path / "s.csv", "Summary", "aggregate", ["image_auroc"],
                                  {"category", "arm"}).image_auroc[1])   # NaN stays "missing"


# --------------------------------------------------------------------------- 5. outputs published as a set
class Injector:
    """Counts the steps of publishing an output set (a complete temporary written = its fsync, a
    rename into place) and fails the ``fail_at``-th one, as a full disk or an I/O error would."""

    def __init__(self, monkeypatch, fail_at: int | None = None) -> None:
        self.steps: list[str] = []
        self.fail_at = fail_at
        real_fsync, real_replace = files._fsync, os.replace

        def fsync(path, directory=False):
            if not directory:
                self._step(f"write {Path(path).name[1:].rsplit('.', 2)[0]}", errno.ENOSPC)   # .<name>.<random>.tmp
            return real_fsync(path, directory)

        def replace(src, dst, *a, **k):
            self._step(f"rename {Path(dst).name}", errno.EIO)
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(files, "_fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def _step(self, what: str, code: int) -> None:
        self.steps.append(what)
        if self.fail_at is not None and len(self.steps) == self.fail_at + 1:
            raise OSError(code, os.strerror(code))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _check_all_or_nothing(folder: Path, names: list[str], old: dict[str, bytes], new: dict[str, bytes]) -> None:
    """After a failed attempt: the earlier set exactly as it was, or none of the set's files."""
    now = _snapshot(folder)
    mine = {k: v for k, v in now.items() if k in names or k in old or k in new}
    assert not [k for k in now if k.rsplit("/", 1)[-1].startswith(".") and k.endswith(".tmp")], now.keys()
    assert mine == old or not mine, (sorted(mine), sorted(old))


def _old_set(folder: Path, names: list[str]) -> dict[str, bytes]:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(f"from an earlier attempt: {name}\n".encode())
    return _snapshot(folder)


def _publishing_steps(monkeypatch, action) -> list[str]:
    with monkeypatch.context() as m:
        injector = Injector(m)
        action()
    return [s for s in injector.steps]


def _each_step(monkeypatch, action, folder: Path, names: list[str], old: dict[str, bytes], n_steps: int,
               reset=None) -> None:
    for k in range(n_steps):
        if reset:
            reset()
        with monkeypatch.context() as m:
            Injector(m, fail_at=k)
            with pytest.raises(RDError, match="Cannot write"):
                action()
        _check_all_or_nothing(folder, names, old, {})


def test_output_set_is_all_or_nothing_at_each_step(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    names = ["a.csv", "b.json", "marker.pt"]

    def action():
        with files.output_set(folder / "marker.pt"):
            files.write_text(folder / "marker.pt", "new marker")   # written first, published last
            files.write_text(folder / "a.csv", "new a")
            files.write_json(folder / "b.json", {"new": 1})

    steps = _publishing_steps(monkeypatch, lambda: None)
    assert steps == []
    for old in ({}, None):
        for p in folder.iterdir():
            p.unlink()
        old = _old_set(folder, names) if old is None else {}
        with monkeypatch.context() as m:
            injector = Injector(m, fail_at=10**6)
            action()
        steps = injector.steps
        assert steps == ["write marker.pt", "write a.csv", "write b.json",
                         "rename a.csv", "rename b.json", "rename marker.pt"], steps

        def reset(old=old):
            for p in folder.iterdir():
                p.unlink()
            for k, v in old.items():
                (folder / k).write_bytes(v)

        _each_step(monkeypatch, action, folder, names, old, len(steps), reset)
    # and without a failure, all three are new
    reset()
    action()
    assert (folder / "a.csv").read_text() == "new a" and (folder / "marker.pt").read_text() == "new marker"


def test_train_outputs_are_one_set_with_model_last(run, tmp_path, monkeypatch):
    from rd.run import TrainConfig
    from rd.train import train

    out = tmp_path / "t"
    cfg = TrainConfig(data_root=str(_data(run)), category=CAT, backbone="resnet18", image_size=64, epochs=1,
                      batch_size=8, seed=0, device="cpu", threads=1)
    names = ["history.csv", "train.json", "model.pt"]
    out.mkdir()
    with monkeypatch.context() as m:
        injector = Injector(m)
        train(cfg, out)
    steps = [s for s in injector.steps if s.split()[1] in names]
    assert steps[-3:] == ["rename history.csv", "rename train.json", "rename model.pt"], steps
    shutil.rmtree(out)
    out.mkdir()
    old = _old_set(out, names)

    def reset():
        shutil.rmtree(out)
        out.mkdir()
        for k, v in old.items():
            (out / k).write_bytes(v)

    _each_step(monkeypatch, lambda: train(cfg, out), out, names, old, len(injector.steps), reset)


def test_evaluate_outputs_are_one_set_with_metrics_last(run, tmp_path, monkeypatch):
    from rd.evaluate import OUTPUTS, evaluate_run

    out = tmp_path / "e"
    out.mkdir()

    def action():
        evaluate_run(run / "model.pt", data_root=str(_data(run)), category=CAT, out_dir=out, device="cpu")

    with monkeypatch.context() as m:
        injector = Injector(m)
        action()
    assert injector.steps[-1] == "rename metrics.json" and len(injector.steps) == 2 * len(OUTPUTS), injector.steps
    old = _old_set(out, list(OUTPUTS))

    def reset():
        shutil.rmtree(out)
        out.mkdir()
        for k, v in old.items():
            (out / k).write_bytes(v)

    _each_step(monkeypatch, action, out, list(OUTPUTS), old, len(injector.steps), reset)


def test_predict_outputs_are_one_set_with_predictions_last(run, tmp_path, monkeypatch):
    from rd.use.predict import predict_images

    out = tmp_path / "p"
    images = sorted((_data(run) / CAT / "test" / "good").glob("*.png"))[:2]

    def action():
        predict_images(run, images, out, device="cpu")

    with monkeypatch.context() as m:
        injector = Injector(m)
        action()
    assert injector.steps == ["write 000.png", "write 001.png", "write predictions.csv",
                              "rename 000.png", "rename 001.png", "rename predictions.csv"], injector.steps
    shutil.rmtree(out)
    out.mkdir()
    old = _old_set(out, ["predictions.csv", "figures/old.png"])
    names = ["predictions.csv", "figures/000.png", "figures/001.png"]

    def reset():
        shutil.rmtree(out)
        out.mkdir()
        for k, v in old.items():
            (out / k).parent.mkdir(parents=True, exist_ok=True)
            (out / k).write_bytes(v)

    for k in range(len(injector.steps)):
        reset()
        with monkeypatch.context() as m:
            Injector(m, fail_at=k)
            with pytest.raises(RDError, match="Cannot write"):
                action()
        now = _snapshot(out)
        assert now == old or set(now) == {"figures/old.png"}, (k, sorted(now))
        assert not any(n in now for n in names[1:])


def test_export_keeps_the_old_pair_until_the_new_pair_is_complete(run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from rd.use.export import export_onnx

    out = tmp_path / "m.onnx"

    def action():
        export_onnx(run, out)

    with monkeypatch.context() as m:
        injector = Injector(m)
        action()
    assert injector.steps == ["write m.onnx", "write m.json", "rename m.onnx", "rename m.json"], injector.steps
    old = {"m.onnx": b"old onnx", "m.json": b'{"old": true}'}

    def reset():
        for k, v in old.items():
            (tmp_path / k).write_bytes(v)

    for k in range(len(injector.steps)):
        reset()
        with monkeypatch.context() as m:
            Injector(m, fail_at=k)
            with pytest.raises(RDError):
                action()
        now = {n: (tmp_path / n).read_bytes() for n in old if (tmp_path / n).exists()}
        assert now == old or not now, (k, injector.steps[k], now.keys())
        assert not list(tmp_path.glob(".*.tmp"))


def test_every_command_clears_its_own_temporaries_at_start(run, tmp_path):
    pytest.importorskip("onnxruntime")
    from rd.evaluate import evaluate_run
    from rd.use.export import export_onnx
    from rd.use.predict import predict_images

    ev = _copy_run(run, tmp_path / "ev")
    stale_eval = [ev / ".threshold.json.x1.tmp", ev / ".metrics.json.x2.tmp", ev / ".scores.csv.x3.tmp"]
    exp = [tmp_path / ".m.onnx.k9.tmp", tmp_path / ".m.json.k9.tmp"]
    pred = tmp_path / "p"
    (pred / "figures").mkdir(parents=True)
    stale_pred = [pred / ".predictions.csv.z.tmp", pred / "figures" / ".000.png.z.tmp"]
    for p in stale_eval + exp + stale_pred:
        p.write_bytes(b"left by kill -9")
    other = tmp_path / ".summary.csv.q.tmp"   # another command's
    other.write_bytes(b"not ours")
    with pytest.warns(UserWarning, match="temporary file"):
        evaluate_run(ev / "model.pt", data_root=str(_data(run)), category=CAT, out_dir=ev, device="cpu")
    with pytest.warns(UserWarning, match="removed 2 temporary file"):
        export_onnx(run, tmp_path / "m.onnx")
    with pytest.warns(UserWarning, match="removed 2 temporary file"):
        predict_images(run, [_data(run) / CAT / "test" / "good" / "000.png"], pred, device="cpu")
    assert not any(p.exists() for p in stale_eval + exp + stale_pred) and other.exists()


# --------------------------------------------------------------------------- 6. enumerating inputs
def test_figure_names_never_clash():
    from rd.use.predict import figure_names

    names = figure_names([Path("/d/a/b.png"), Path("/d/a__b.png"), Path("/d/c/A.png"), Path("/d/c/a.png"),
                          Path("/d/x.jpg"), Path("/d/x.jpg.png")])
    assert names == ["a__b.png", "a__b~2.png", "c__A.png", "c__a~2.png", "x.jpg.png", "x.jpg~2.png"], names
    assert len({n.lower() for n in names}) == len(names)


def test_slash_and_double_underscore_get_two_figures(run, tmp_path, capsys):
    src = _data(run) / CAT / "test" / "good"
    images = tmp_path / "in"
    (images / "a").mkdir(parents=True)
    shutil.copy(src / "000.png", images / "a" / "b.png")
    shutil.copy(src / "001.png", images / "a__b.png")
    rc, lines = _predict(capsys, run, tmp_path / "p", images)
    assert rc == 0, lines
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert frame.figure.nunique() == 2 and all((tmp_path / "p" / f).is_file() for f in frame.figure)


@pytest.mark.parametrize("where", ["out", "."])
def test_out_inside_the_scanned_folder_is_not_scanned(where, run, tmp_path, capsys):
    images = tmp_path / "in"
    shutil.copytree(_data(run) / CAT / "test" / "good", images)
    out = images / where
    for _ in range(2):
        rc, lines = _predict(capsys, run, out, images)
        assert rc == 0, lines
        frame = pd.read_csv(out / "predictions.csv")
        assert len(frame) == 4 and not frame.path.str.contains("out/|figures/|predictions").any(), frame.path.tolist()


def test_list_file_with_a_utf8_bom(run, tmp_path, capsys):
    good = _data(run) / CAT / "test" / "good"
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{good / '000.png'}\n{good / '001.png'}\n".encode())
    rc, lines = _predict(capsys, run, tmp_path / "p", listing)
    assert rc == 0, lines
    frame = pd.read_csv(tmp_path / "p" / "predictions.csv", keep_default_na=False)
    assert frame.decision.tolist().count("skipped") == 0 and len(frame) == 2, frame


def test_symlinked_subfolder_is_followed_and_a_loop_is_one_warning(run, tmp_path):
    from rd.use.predict import collect_images

    images = tmp_path / "in"
    images.mkdir()
    (images / "linked").symlink_to(_data(run) / CAT / "test" / "good", target_is_directory=True)
    (images / "loop").symlink_to(images, target_is_directory=True)
    with pytest.warns(UserWarning, match="not searching .*loop again") as record:
        entries = collect_images([images])
    assert len([w for w in record if "not searching" in str(w.message)]) == 1
    assert sorted(e.path.name for e in entries if not e.reason) == ["000.png", "001.png", "002.png", "003.png"]


def _png(path: Path, size: tuple[int, int] = (8, 8), value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def test_btad_bmp_beside_png_is_an_ambiguous_name(tmp_path):
    from rd.data import btad

    cat = tmp_path / "01"
    for rel in ("train/ok/0000.png", "train/ok/0001.png", "test/ok/0000.png", "test/ko/0000.png",
                "test/ko/0000.bmp", "ground_truth/ko/0000.png"):
        _png(cat / rel)
    with pytest.raises(RDError, match=r"same name but for the extension: 0000\.bmp and 0000\.png"):
        btad.scan_category(tmp_path, "01")
    (cat / "test" / "ko" / "0000.bmp").unlink()
    assert len(btad.scan_category(tmp_path, "01").test) == 2


def test_mvtec_png_beside_upper_case_png_is_an_ambiguous_name(run, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(_data(run) / CAT, root / CAT)
    defect = next(p for p in (root / CAT / "test").iterdir() if p.name != "good")
    shutil.copy(defect / "000.png", defect / "000.PNG")
    rc, lines = cli(capsys, "prepare-data", "--dataset", "mvtec", "--root", str(root), "--category", CAT,
                    "--out", str(tmp_path / "m.json"))
    one_error(rc, lines, "000.PNG and 000.png", "same name but for the extension")


def _huge_png(path: Path, side: int) -> None:
    """A valid 1-bit ``side`` x ``side`` PNG, a few kB on disk (all black)."""
    raw = b"".join(b"\x00" + bytes((side + 7) // 8) for _ in range(side))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def test_a_huge_image_names_the_decompression_bomb_guard(tmp_path, monkeypatch):
    from rd.data.decode import MAX_PIXELS_ENV, decode_file

    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    big = tmp_path / "big.png"
    _huge_png(big, 15000)
    with pytest.raises(RDError) as info:
        decode_file(big)
    text = str(info.value)
    assert "decompression-bomb guard" in text and MAX_PIXELS_ENV in text and "corrupt" not in text, text


def test_the_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    from PIL import Image

    from rd.data.decode import MAX_PIXELS_ENV, decode_file

    _png(tmp_path / "x.png", (200, 200), 7)
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")      # 40000 px > 2 x 10000: Pillow refuses it
    with pytest.raises(RDError, match="decompression-bomb"):
        decode_file(tmp_path / "x.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "50000")
    assert decode_file(tmp_path / "x.png").shape == (200, 200, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(RDError, match="not a whole number"):
        decode_file(tmp_path / "x.png")
    assert Image.MAX_IMAGE_PIXELS == 89478485        # Pillow's own default is left as it was
