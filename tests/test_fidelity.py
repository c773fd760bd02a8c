"""Fidelity to the official RD4AD code and to each family's own recipe.

Each test pins one point where the comparison of teachers could silently differ from the paper
(initialisation, pretraining data, the student, weight decay, statistics, the PRO definition,
random teachers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rd.errors import RDError
from rd.method import build_rd, count_params
from rd.method.weights import (
    IMAGENET_1K_TAGS,
    create_backbone,
    pretraining_of,
    resolve_weights,
)


# --------------------------------------------------------------------------- 1. initialisation
@pytest.mark.parametrize("backbone", ["resnet18", "wide_resnet50_2"])
def test_resnet_student_starts_as_the_official_code(backbone):
    torch.manual_seed(0)
    model = build_rd(backbone, "none")
    convs = norms = 0
    for part in (model.bottleneck, model.decoder):
        for name, m in part.named_modules():
            if isinstance(m, nn.Conv2d):  # ConvTranspose2d is not a Conv2d: keeps PyTorch's default
                out_ch, _, kh, kw = m.weight.shape
                expected = math.sqrt(2.0 / (out_ch * kh * kw))
                std = m.weight.std().item()
                assert abs(std - expected) / expected < 0.10, f"{name}: std {std:.4f} vs {expected:.4f}"
                convs += 1
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
                norms += 1
    assert convs >= 15 and norms >= 20


def test_convnext_student_keeps_convnext_init():
    torch.manual_seed(0)
    model = build_rd("convnext_pico", "none")
    gammas = [m.gamma for m in model.decoder.modules() if hasattr(m, "gamma") and isinstance(m.gamma, nn.Parameter)]
    assert gammas and all(torch.allclose(g, torch.full_like(g, 1e-6)) for g in gammas)
    dw = model.decoder.layer1.blocks[0].conv_dw.weight
    assert abs(dw.std().item() - 0.02) < 0.004  # truncated normal, std 0.02
    # the fusion convs are conv-BN-ReLU in every family: initialised as the official code
    conv = model.bottleneck.mff2[0]
    expected = math.sqrt(2.0 / (conv.weight.shape[0] * 9))
    assert abs(conv.weight.std().item() - expected) / expected < 0.10


# --------------------------------------------------------------------------- 2. pretraining tags
def test_imagenet_resolves_to_imagenet_1k_for_every_preset_backbone():
    import timm

    for base, tag in IMAGENET_1K_TAGS.items():
        assert f"{base}.{tag}" in timm.list_pretrained(f"{base}.*"), base
        assert pretraining_of(tag) == "in1k", tag
    expected = {"resnet18": "resnet18.tv_in1k", "wide_resnet50_2": "wide_resnet50_2.tv_in1k",
                "convnext_atto": "convnext_atto.d2_in1k", "convnext_femto": "convnext_femto.d1_in1k",
                "convnext_pico": "convnext_pico.d1_in1k", "convnext_nano": "convnext_nano.d1h_in1k",
                "convnext_tiny": "convnext_tiny.fb_in1k"}
    for base, tag in expected.items():
        w = resolve_weights(base, "imagenet")
        assert (w.kind, w.tag, w.pretraining) == ("timm", tag, "in1k")
    lite = resolve_weights("efficientnet_lite0", "imagenet")
    assert (lite.kind, lite.pretraining) == ("package", "in1k")
    assert resolve_weights("resnet18", "none").pretraining == "none"


@pytest.mark.parametrize("tag,data", [("in12k_ft_in1k", "in12k"), ("fb_in22k_ft_in1k", "in22k"),
                                      ("fb_in22k", "in22k"), ("tv_in1k", "in1k"), ("d1h_in1k", "in1k"),
                                      ("clip_laion2b_augreg_ft_in1k", "other"), ("fb_ssl_yfcc100m_ft_in1k", "other"),
                                      ("dinov3_lvd1689m", "other"), ("in12k", "in12k")])
def test_pretraining_data_of_a_tag(tag, data):
    assert pretraining_of(tag) == data


def test_an_explicit_tag_is_taken_as_given_and_recorded():
    w = resolve_weights("convnext_tiny", "convnext_tiny.in12k_ft_in1k")
    assert (w.tag, w.pretraining) == ("convnext_tiny.in12k_ft_in1k", "in12k")
    w = resolve_weights("convnext_tiny.in12k_ft_in1k", "imagenet")  # tag in the backbone name
    assert (w.tag, w.pretraining) == ("convnext_tiny.in12k_ft_in1k", "in12k")


def test_unknown_or_unpinned_tags_are_errors_that_list_the_tags():
    with pytest.raises(RDError, match="in12k_ft_in1k"):  # the message lists what timm has
        resolve_weights("convnext_tiny", "convnext_tiny.no_such_tag")
    with pytest.raises(RDError, match="No ImageNet-1k-only pretrained tag is pinned for 'resnet26'"):
        resolve_weights("resnet26", "imagenet")
    with pytest.raises(RDError, match="tag of convnext_tiny"):
        resolve_weights("convnext_tiny", "resnet18.tv_in1k")


def test_weights_file_records_its_sha256(tmp_path):
    import hashlib

    import timm

    torch.manual_seed(1)
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    _, source = create_backbone("resnet18", str(path), out_indices=(1, 2, 3))
    assert source.kind == "file" and source.pretraining == "other"
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- 3. the student
@pytest.mark.parametrize("backbone,student,family,params", [
    ("resnet18", "auto", "resnet", 15_383_168),
    ("convnext_pico", "resnet", "resnet", 15_383_168),     # resnet18's channels: exactly its student
    ("convnext_pico", "auto", "convnext", 8_757_952),
    ("wide_resnet50_2", "auto", "resnet", 83_802_624),
    ("convnext_tiny", "wide_resnet50_2", "resnet", 11_799_744),
])
def test_student_choice(backbone, student, family, params):
    torch.manual_seed(0)
    model = build_rd(backbone, "none", student=student)
    assert model.spec.student.family == family
    assert count_params(model.bottleneck) + count_params(model.decoder) == params


def test_resnet_student_of_convnext_pico_is_resnet18s():
    a = build_rd("resnet18", "none").spec.student
    b = build_rd("convnext_pico", "none", student="resnet").spec.student
    assert a == b


def test_unknown_student_is_one_line_error(tmp_path):
    from rd.run import TrainConfig, build_seeded

    with pytest.raises(RDError, match="student 'vit'"):
        build_seeded(TrainConfig(data_root=str(tmp_path), category="x", backbone="convnext_pico", student="vit"))


# --------------------------------------------------------------------------- 4. weight decay
def test_tuned_setting_exempts_1d_parameters_from_weight_decay():
    from rd.optim import make_optimizer, weight_decay_rule
    from rd.train import student_modules

    torch.manual_seed(0)
    model = build_rd("convnext_pico", "none")
    tuned = {"optimizer": "adamw", "lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.05, "schedule": "cosine"}
    opt = make_optimizer(student_modules(model), tuned)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    grouped = {id(p) for g in opt.param_groups for p in g["params"]}
    trainable = [(n, p) for n, p in student_modules(model).named_parameters() if p.requires_grad]
    assert grouped == {id(p) for _, p in trainable}
    for name, p in trainable:
        assert (id(p) in decayed) == (p.ndim >= 2 and not name.endswith(".bias")), name
    assert any("gamma" in n for n, _ in trainable)  # layer scales exist and are exempt
    assert "none on biases and 1-D" in weight_decay_rule(tuned)
    assert weight_decay_rule({"weight_decay": 0.0}) == "no weight decay"


# --------------------------------------------------------------------------- 5. statistics
def test_differences_equal_up_to_rounding_are_not_significant():
    from rd.stats import paired_test

    a = np.array([760, 771, 783]) / 800
    b = np.array([770, 781, 793]) / 800          # a + 10/800, rounded differently
    assert np.ptp(b - a) > 0                     # not exactly equal: the old check missed it
    row = paired_test(a, b, min_units=2)
    assert math.isnan(row["p"]) and math.isnan(row["t"])
    assert "up to rounding" in row["note"]


def test_near_constant_but_varying_differences_are_tested():
    from rd.stats import paired_test

    a = np.array([760, 771, 783]) / 800
    b = a + np.array([10, 10, 11]) / 800
    row = paired_test(a, b, min_units=2)
    assert 0 < row["p"] < 0.05 and row["note"] == ""


# --------------------------------------------------------------------------- 6. PRO as the paper
def _official_compute_pro(masks: np.ndarray, amaps: np.ndarray, num_th: int = 200) -> float:
    """The official test.py's compute_pro, line by line (DataFrame.append replaced by lists)."""
    from skimage import measure
    from sklearn.metrics import auc

    rows = []
    binary_amaps = np.zeros_like(amaps, dtype=bool)
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / num_th
    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th] = 0
        binary_amaps[amaps > th] = 1
        pros = []
        for binary_amap, mask in zip(binary_amaps, masks):
            for region in measure.regionprops(measure.label(mask)):
                tp_pixels = binary_amap[region.coords[:, 0], region.coords[:, 1]].sum()
                pros.append(tp_pixels / region.area)
        inverse_masks = 1 - masks
        fpr = np.logical_and(inverse_masks, binary_amaps).sum() / inverse_masks.sum()
        rows.append((np.mean(pros), fpr))
    pro, fpr = np.array(rows).T
    keep = fpr < 0.3
    fpr, pro = fpr[keep], pro[keep]
    return auc(fpr / fpr.max(), pro)


def test_pro_rd4ad_is_the_official_procedure():
    from rd.metrics import aupro, pro_rd4ad

    rng = np.random.default_rng(0)
    n, size = 6, 48
    masks = np.zeros((n, size, size), dtype=bool)
    masks[1, 5:15, 5:20] = True
    masks[1, 30:40, 30:34] = True              # two regions in one image
    masks[2, 20:30, 10:12] = True
    masks[3, 0:8, 40:48] = True
    masks[4, 10:11, 10:30] = True
    maps = rng.random((n, size, size)).astype(np.float32)
    maps += 0.8 * masks * rng.random((n, size, size)).astype(np.float32)
    official = np.mean([_official_compute_pro(masks[i:i + 1].astype(int), maps[i:i + 1].astype(np.float64))
                        for i in range(n) if masks[i].any()])
    ours = pro_rd4ad(maps, masks)
    assert ours == pytest.approx(official, abs=1e-12)
    assert abs(ours - aupro(maps, masks)) > 1e-3   # a different metric from the MVTec AUPRO


# --------------------------------------------------------------------------- 7. random teachers
def _blocks(teacher: nn.Module) -> list[nn.Module]:
    from timm.models.convnext import ConvNeXtBlock
    from timm.models.resnet import BasicBlock, Bottleneck

    return [m for m in teacher.modules() if isinstance(m, (BasicBlock, Bottleneck, ConvNeXtBlock))]


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_pico"])
def test_every_block_of_a_random_teacher_changes_its_input(backbone):
    torch.manual_seed(0)
    model = build_rd(backbone, "none")
    blocks = _blocks(model.teacher)
    changes = {}

    def hook(module, inputs, output):
        x = inputs[0]
        if x.shape == output.shape:
            changes[module] = ((output - x).norm() / x.norm()).item()

    handles = [b.register_forward_hook(hook) for b in blocks]
    with torch.no_grad():
        model.teacher(torch.randn(2, 3, 64, 64))
    for h in handles:
        h.remove()
    assert len(changes) >= len(blocks) - 3        # the shape-changing first blocks are skipped
    # timm's training init (zero last BN, layer scale 1e-6) gives 0 and ~1e-8 here; active
    # branches change a block's input by 2 % (ConvNeXt's first stage) to over 20 %.
    assert min(changes.values()) > 0.01, changes


# --------------------------------------------------------------------------- what a run records
def test_a_run_records_teacher_student_and_decay_rule(brick_root, tmp_path):
    """train.json, metrics.json and summary.csv carry the resolved teacher and the student."""
    import hashlib
    import json

    import pandas as pd
    import timm

    from rd.aggregate import build_summary
    from rd.evaluate import evaluate_run
    from rd.run import TrainConfig
    from rd.train import train

    torch.manual_seed(3)
    weights = tmp_path / "pico.pth"
    torch.save(timm.create_model("convnext_pico").state_dict(), weights)
    run = tmp_path / "results/runs/textures/brick/pico_rs/tuned/seed0"
    tuned = {"optimizer": "adamw", "lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.05, "schedule": "cosine"}
    cfg = TrainConfig(data_root=str(brick_root), category="brick", backbone="convnext_pico", name="pico_rs",
                      student="resnet", weights=str(weights), setting_name="tuned", setting=tuned,
                      image_size=32, epochs=1, batch_size=16, device="cpu")
    record = train(cfg, run)
    assert record["backbone"] == "pico_rs" and record["model"] == "convnext_pico"
    assert record["student_family"] == "resnet" and record["student_reference"] == "resnet18"
    assert record["params"]["student"] == 15_383_168
    assert record["teacher"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["teacher"]["tag"] == f"file:{weights.resolve()}"
    assert "none on biases and 1-D" in record["weight_decay_rule"]
    assert record["random_teacher_init"] is None
    assert json.loads((run / "train.json").read_text())["teacher"]["pretraining"] == "other"
    metrics = evaluate_run(run / "model.pt", data_root=str(brick_root), category="brick", out_dir=run, device="cpu")
    assert metrics["arm"] == "pico_rs/tuned" and 0 <= metrics["pro_rd4ad"] <= 1
    summary = build_summary([run])
    row = summary.iloc[0]
    assert (row["backbone"], row["model"], row["student_family"]) == ("pico_rs", "convnext_pico", "resnet")
    assert row["weights_sha256"] == record["teacher"]["weights_sha256"] and row["pretraining"] == "other"
    assert isinstance(summary, pd.DataFrame)
