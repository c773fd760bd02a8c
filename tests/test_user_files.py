"""Nothing the user had is lost: no rule owns (as a Snakemake output, which Snakemake deletes
when a job fails or reruns) a folder that can hold the user's files.

Each case builds the user's folder, runs the real Snakemake and checks every user file byte for
byte afterwards.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from rd.params import GENERATED_DONE, TEXTURE_CATEGORIES
from tests.helpers.workflow_runner import REPO, copy_workflow, declared_outputs, snakemake

PIPELINE_FOLDERS = ("results/", "reports/", "logs/")


def _user_tree(root: Path, categories: list[str]) -> dict[str, str]:
    """An MVTec-like user folder with images and a notes file; {relative path: sha256}."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 130, 140)).save(buf, format="PNG")
    png = buf.getvalue()
    files = {}
    for cat in categories:
        for rel, data in [(f"{cat}/train/good/000.png", png), (f"{cat}/test/good/000.png", png),
                          (f"{cat}/notes.txt", b"my notes, not a copy anywhere else\n")]:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (root / "README-of-the-user.txt").write_text("mine\n")
    for path in root.rglob("*"):
        if path.is_file():
            files[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _unchanged(root: Path, files: dict[str, str]) -> None:
    for rel, digest in files.items():
        path = root / rel
        assert path.is_file(), f"user file {rel} was deleted"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"user file {rel} was changed"


def _config(wd: Path, **dataset) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["dataset"] = dataset
    path = wd / "user.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_forgotten_dataset_name_is_refused_before_anything_runs(tmp_path):
    """`dataset: {root: mvtec_copy, categories: [bottle]}` without `name: mvtec`."""
    wd = copy_workflow(tmp_path / "wf")
    files = _user_tree(wd / "mvtec_copy", ["bottle"])
    _config(wd, root="mvtec_copy", categories=["bottle"])
    proc = snakemake(wd, "--configfile", "user.yaml", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "not an embedded texture category" in text and "dataset.name" in text
    _unchanged(wd / "mvtec_copy", files)


@pytest.mark.parametrize("category", ["..", ".", ".hidden", "a/b"])
def test_category_must_be_one_folder_name(tmp_path, category):
    wd = copy_workflow(tmp_path / "wf")
    files = _user_tree(wd / "data", ["grass"])
    _config(wd, root="data/textures", categories=[category])
    proc = snakemake(wd, "--configfile", "user.yaml", "-n", check=False)
    assert proc.returncode != 0 and "categories" in proc.stdout + proc.stderr
    _unchanged(wd / "data", files)


def test_dataset_root_may_not_overlap_the_outputs(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    _config(wd, name="textures", root="results/data", categories=["grass"])
    proc = snakemake(wd, "--configfile", "user.yaml", "-n", check=False)
    assert proc.returncode != 0 and "overlaps the workflow's output folder" in proc.stdout + proc.stderr


def test_failing_generator_job_leaves_a_user_folder_as_it_was(tmp_path):
    """The config passes (grass is a texture name) but root/grass is the user's own folder: the
    prepare_data job fails, and Snakemake's cleanup of the failed job touches nothing of it."""
    wd = copy_workflow(tmp_path / "wf")
    files = _user_tree(wd / "mine", ["grass"])
    _config(wd, name="textures", root="mine", categories=["grass"])
    proc = snakemake(wd, "results/data/textures/grass.json", "--configfile", "user.yaml", check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    log = (wd / "logs/prepare_data/textures/grass.log").read_text()
    assert "was not made by rd's texture generator" in log
    _unchanged(wd / "mine", files)
    assert not (wd / "mine/grass" / GENERATED_DONE).exists()


@pytest.mark.slow
def test_generated_folder_regenerates_but_a_user_file_in_it_is_kept(tmp_path):
    """Deleting a generated folder regenerates it; a changed seed regenerates a folder that holds
    only generated files; once the user keeps a file there, it is refused and left alone."""
    wd = copy_workflow(tmp_path / "wf")
    gen = {"n_train": 4, "n_test_good": 2, "n_per_defect": 1, "size": 48}
    target = ["results/data/textures/grass.json", f"data/textures/grass/{GENERATED_DONE}"]
    _config(wd, name="textures", root="data/textures", categories=["grass"], generate=gen)
    snakemake(wd, *target, "--configfile", "user.yaml")
    folder = wd / "data/textures/grass"
    assert (folder / GENERATED_DONE).is_file()
    first = (folder / "generator.json").read_text()

    import shutil
    shutil.rmtree(folder)                                    # deleted by hand: regenerated
    snakemake(wd, *target, "--configfile", "user.yaml")
    assert (folder / "generator.json").read_text() == first

    _config(wd, name="textures", root="data/textures", categories=["grass"], generate=gen, seed=1)
    snakemake(wd, *target, "--configfile", "user.yaml")     # only generated files: regenerated
    assert '"seed": 1' in (folder / "generator.json").read_text()

    (folder / "my_notes.txt").write_text("keep me\n")
    _config(wd, name="textures", root="data/textures", categories=["grass"], generate=gen, seed=2)
    proc = snakemake(wd, *target, "--configfile", "user.yaml", check=False)
    assert proc.returncode != 0
    assert "my_notes.txt" in (wd / "logs/prepare_data/textures/grass.log").read_text()
    assert (folder / "my_notes.txt").read_text() == "keep me\n"
    assert '"seed": 1' in (folder / "generator.json").read_text()


PRESETS = ["config.yaml"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "workflow/configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_no_declared_output_is_a_user_folder(tmp_path, preset):
    """Every rule's declared outputs, for every preset: none is a folder that existed before the
    run, and each lies under the workflow's own folders -- except the generator's marker file."""
    wd = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((wd / preset).read_text())
    ds = cfg.get("dataset", {})
    name = ds.get("name", "textures")
    args = ["--configfile", preset]
    root = "userdata"
    if name != "textures":
        cats = ds.get("categories") or []
        for cat in cats:
            (wd / root / cat).mkdir(parents=True, exist_ok=True)
        args += ["--config", f"dataset={{name: {name}, root: {root}, categories: [{', '.join(map(repr, cats))}]}}"]
    else:
        root = ds.get("root", "data/textures")
    before = {p.relative_to(wd).as_posix() for p in wd.rglob("*") if p.is_dir()}
    rows = declared_outputs(wd, *args)
    assert {rule for _, rule in rows} >= {"prepare_data", "train", "report"}
    for path, rule in rows:
        assert path.rstrip("/") not in before, f"{rule} declares an existing folder {path} as its output"
        own = path.startswith(PIPELINE_FOLDERS)
        marker = (name == "textures" and rule == "prepare_data" and path.endswith("/" + GENERATED_DONE)
                  and Path(path).parent.name in TEXTURE_CATEGORIES)
        assert own or marker, f"{rule} declares {path} as an output outside the workflow's folders"
