"""The teacher-isolating control: a student that can fit signed features (linear output), one
student for every teacher (orthonormal projection), one initialisation per seed, the proposed
projection, the teacher-recipe table and the smoke test's sign measurements."""

from __future__ import annotations

import json

import pytest
import torch

from rd import cli
from rd.errors import RDError
from rd.method import build_rd, count_params, student_init_sha256
from rd.method.teacher import OrthonormalProjection
from rd.method.weights import TEACHER_RECIPES, resolve_weights, teacher_recipe
from rd.smoke import feature_signs, smoke_test

WRN_STUDENT = 83_802_624
R18_STUDENT = 15_383_168


def test_linear_output_student_emits_signed_features_relu_does_not():
    torch.manual_seed(0)
    feats = build_rd("resnet18").teacher(torch.randn(2, 3, 64, 64))
    relu = build_rd("resnet18", init_seed=0)
    linear = build_rd("resnet18", student_output="linear", init_seed=0)
    relu.train(), linear.train()
    with torch.no_grad():
        assert all((s >= 0).all() for s in relu.student(feats))
        assert all((s < 0).any() for s in linear.student(feats))
    assert count_params(relu, True) == count_params(linear, True) == R18_STUDENT
    assert linear.spec.student.output == "linear" and relu.spec.student.output == "relu"


def test_control_pairs_have_equal_trainable_counts():
    with torch.device("meta"):
        tiny = build_rd("convnext_tiny", student="wide_resnet50_2", student_output="linear", projection=True)
        wrn = build_rd("wide_resnet50_2", student="wide_resnet50_2", student_output="linear")
        pico = build_rd("convnext_pico", student="resnet18", student_output="linear")
    assert count_params(tiny, trainable_only=True) == count_params(wrn, trainable_only=True) == WRN_STUDENT
    assert count_params(tiny.teacher, trainable_only=True) == 0
    assert tiny.teacher.channels == (256, 512, 1024) and tiny.spec.projection == "orthonormal"
    assert count_params(pico, trainable_only=True) == R18_STUDENT


def test_orthonormal_projection_is_exact_frozen_and_seeded():
    proj = OrthonormalProjection((96, 192, 384), (256, 512, 1024))
    assert not list(proj.parameters())  # buffers only
    for i, c_in in enumerate((96, 192, 384)):
        w = getattr(proj, f"weight{i}")[:, :, 0, 0].double()
        assert (w.T @ w - torch.eye(c_in, dtype=torch.float64)).abs().max() < 1e-6
    again = OrthonormalProjection((96, 192, 384), (256, 512, 1024))
    assert torch.equal(proj.weight0, again.weight0)
    # cosines between teacher channel vectors are preserved
    t = torch.randn(2, 96, 4, 4)
    p = proj([t, torch.randn(1, 192, 2, 2), torch.randn(1, 384, 1, 1)])[0]
    cos = torch.nn.functional.cosine_similarity
    assert torch.allclose(cos(t.flatten(1), t.flatten(1).roll(1, 0)), cos(p.flatten(1), p.flatten(1).roll(1, 0)),
                          atol=1e-5)


def test_width_reducing_projection_is_refused_with_one_line(tmp_path, capsys):
    code = cli.main(["smoke", "--backbone", "convnext_base", "--student", "resnet18", "--projection", "orthonormal",
                     "--image-sizes", "64", "--out", str(tmp_path / "s.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and " Fix: " in err and "\n" not in err
    assert "128/256/512" in err
    with pytest.raises(ValueError, match="named student"):
        build_rd("convnext_pico", projection="orthonormal")


def test_guide_projection_taps_strides_and_non_negative_features():
    with torch.device("meta"):
        meta = build_rd("convnext_tiny", projection="guide")
    assert meta.teacher.strides == (4, 8, 16) and meta.teacher.channels == (64, 128, 256)
    assert count_params(meta, trainable_only=True) == R18_STUDENT
    torch.manual_seed(0)
    model = build_rd("convnext_pico", projection="guide")
    t, s = model(torch.randn(2, 3, 64, 64))
    assert [tuple(x.shape[1:]) for x in t] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert all((x >= 0).all() for x in t)
    assert feature_signs(t)["negative_fraction"] == [0.0, 0.0, 0.0]


def test_student_init_is_one_per_seed_whatever_the_teacher():
    def sha(backbone, seed):
        torch.manual_seed(seed)  # the random teacher consumes the global generator first
        return student_init_sha256(build_rd(backbone, student="resnet18", student_output="linear", init_seed=seed))

    assert sha("resnet18", 0) == sha("convnext_pico", 0)
    assert sha("resnet18", 0) != sha("resnet18", 1)


def test_loss_floor_is_the_non_negative_students_minimum():
    torch.manual_seed(0)
    t = torch.randn(4, 8, 3, 3)
    out = feature_signs([t])
    flat = t.flatten(1)
    best = 1 - torch.nn.functional.cosine_similarity(flat, flat.clamp_min(0)).mean()
    assert out["loss_floor"] == pytest.approx(float(best), rel=1e-6)
    # any other non-negative student does no better
    other = flat.abs()
    assert float(1 - torch.nn.functional.cosine_similarity(flat, other).mean()) >= out["loss_floor"]
    assert 0.3 < out["negative_fraction"][0] < 0.7
    assert feature_signs([t.abs()])["loss_floor"] == pytest.approx(0.0, abs=1e-9)


def test_smoke_writes_signs_on_training_images(brick_root, tmp_path):
    out = tmp_path / "smoke.json"
    assert cli.main(["smoke", "--backbone", "convnext_pico", "--student", "resnet18", "--student-output", "linear",
                     "--image-sizes", "64", "--data-root", str(brick_root), "--category", "brick",
                     "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["student_output"] == "linear" and record["projection"] == "none"
    assert len(record["negative_fraction"]) == 3 and all(0.2 < f < 0.8 for f in record["negative_fraction"])
    assert record["loss_floor"] > 0.5 and "training images" in record["sign_batch"]
    r18 = smoke_test("resnet18", image_sizes=[64])
    assert r18["negative_fraction"] == [0.0, 0.0, 0.0] and r18["loss_floor"] == 0.0
    assert r18["student_output"] == "relu"


def test_recipe_table_covers_every_pinned_tag_and_tells_recipes_apart():
    from rd.method.weights import IMAGENET_1K_TAGS

    for base, tag in IMAGENET_1K_TAGS.items():
        assert f"{base}.{tag}" in TEACHER_RECIPES
    wrn = teacher_recipe(resolve_weights("wide_resnet50_2", "imagenet"))
    tv2 = teacher_recipe(resolve_weights("wide_resnet50_2.tv2_in1k", "imagenet"))
    tiny = teacher_recipe(resolve_weights("convnext_tiny", "imagenet"))
    assert (wrn["recipe"], wrn["top1"]) == ("torchvision_v1", 78.486)
    assert (tv2["recipe"], tv2["top1"]) == ("torchvision_v2", 81.612)
    assert (tiny["recipe"], tiny["top1"]) == ("convnext_fb", 82.066)
    lite = teacher_recipe(resolve_weights("efficientnet_lite0", "imagenet"))
    assert lite["top1"] is None and "not found" in lite["words"]
    assert teacher_recipe(resolve_weights("resnet18", "none"))["recipe"] == "none"


def test_train_records_the_control_columns_in_train_json_and_summary(brick_root, tmp_path):
    from rd.aggregate import build_summary
    from rd.run import TrainConfig
    from rd.train import train

    rows = {}
    for backbone in ("resnet18", "convnext_pico"):
        out = tmp_path / backbone
        cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone=backbone, name=f"{backbone}_ctrl",
                          student="resnet18", student_output="linear", image_size=64, epochs=1, batch_size=8,
                          seed=3, device="cpu", threads=1)
        record = train(cfg, out)
        (out / "metrics.json").write_text(json.dumps({"category": "brick", "backbone": f"{backbone}_ctrl",
                                                      "setting": "baseline", "seed": 3, "image_auroc": 0.5,
                                                      "pixel_auroc": 0.5, "aupro": 0.5}))
        assert record["student_output"] == "linear" and record["projection"] == "none"
        assert record["teacher_recipe"] == "none" and record["teacher_top1"] is None
        rows[backbone] = record
    assert rows["resnet18"]["student_init_sha256"] == rows["convnext_pico"]["student_init_sha256"]
    frame = build_summary([tmp_path / "resnet18", tmp_path / "convnext_pico"])
    for col in ("student_output", "student_init_sha256", "teacher_recipe", "teacher_top1", "projection"):
        assert col in frame.columns
    assert set(frame["student_output"]) == {"linear"} and set(frame["projection"]) == {"none"}
    assert frame["student_init_sha256"].nunique() == 1 and len(frame["student_init_sha256"].iloc[0]) == 64
