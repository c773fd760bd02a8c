"""Model facts: official parameter counts, shapes, frozen teacher, weights loading."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import timm
import torch

from rd.errors import RDError
from rd.method.loss import cosine_distillation_loss
from rd.method import build_rd, count_params
from rd.method.bottleneck import OCBE
from rd.method.teacher import rd_out_indices
from rd.method.weights import create_backbone


def student_params(model) -> int:
    return count_params(model.bottleneck) + count_params(model.decoder)


@pytest.mark.parametrize("backbone, ocbe, decoder", [
    ("resnet18", 11_680_000, 3_703_168),
    ("wide_resnet50_2", 58_885_120, 24_917_504),
])
def test_official_parameter_counts(backbone, ocbe, decoder):
    # Counts measured from the authors' RD4AD code (OCBE without its unused conv4/bn4).
    with torch.device("meta"):
        model = build_rd(backbone)
    assert count_params(model.bottleneck) == ocbe
    assert count_params(model.decoder) == decoder
    assert count_params(model, trainable_only=True) == ocbe + decoder


def test_ocbe_has_no_unused_layers():
    names = {n for n, _ in OCBE((64, 128, 256)).named_modules()}
    assert not any("conv4" in n or "bn4" in n for n in names)


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("backbone, channels", [
    ("convnext_atto", (40, 80, 160)), ("convnext_femto", (48, 96, 192)), ("convnext_pico", (64, 128, 256)),
    ("convnext_nano", (80, 160, 320)), ("convnext_tiny", (96, 192, 384)), ("convnext_small", (96, 192, 384)),
    ("convnext_base", (128, 256, 512)), ("resnet18", (64, 128, 256)), ("wide_resnet50_2", (256, 512, 1024)),
    ("efficientnet_lite0", (24, 40, 112)),
])
def test_shapes_strides_channels(backbone, channels, size):
    # Shape propagation on the meta device: the real graph, no arithmetic.
    with torch.device("meta"):
        model = build_rd(backbone)
        t, s = model(torch.empty(2, 3, size, size))
    assert len(t) == len(s) == 3
    for a, b, c, stride in zip(t, s, channels, (4, 8, 16)):
        assert tuple(a.shape) == tuple(b.shape) == (2, c, size // stride, size // stride)


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto", "efficientnet_lite0"])
def test_real_forward_matches_shapes(backbone):
    torch.manual_seed(0)
    model = build_rd(backbone)
    t, s = model(torch.randn(2, 3, 64, 64))
    assert [x.shape for x in t] == [x.shape for x in s]
    assert all(torch.isfinite(x).all() for x in s)


def test_timm_out_indices_follow_strides():
    for name, want in [("resnet18", (1, 2, 3)), ("convnext_tiny", (0, 1, 2)), ("efficientnet_lite0", (1, 2, 3))]:
        with torch.device("meta"):
            info = timm.create_model(name, features_only=True).feature_info.get_dicts()
        assert rd_out_indices(info) == want


def test_torchvision_convnext_stage_taps():
    """torchvision features[1,2,3] give strides 4/8/8; the stride-4/8/16 stages are [1,3,5]."""
    import torchvision

    features = torchvision.models.convnext_tiny().features.eval()
    x = torch.empty(1, 3, 256, 256, device="meta")
    shapes = []
    features = features.to("meta")
    for layer in features:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert [shapes[i] for i in (1, 3, 5)] == [(96, 64, 64), (192, 32, 32), (384, 16, 16)]
    assert [shapes[i] for i in (1, 2, 3)] == [(96, 64, 64), (192, 32, 32), (192, 32, 32)]  # the bug: 4/8/8


@pytest.mark.parametrize("kwargs", [
    dict(backbone="resnet18"), dict(backbone="convnext_pico"), dict(backbone="convnext_pico", projection="guide"),
    dict(backbone="convnext_pico", student="resnet18", projection=True),
    dict(backbone="convnext_atto", student="resnet"), dict(backbone="efficientnet_lite0"),
])
def test_teacher_frozen_and_stays_eval(kwargs):
    model = build_rd(**kwargs)
    assert count_params(model.teacher, trainable_only=True) == 0
    assert count_params(model.bottleneck, trainable_only=True) > 0
    model.train()
    assert not model.teacher.training
    assert all(not m.training for m in model.teacher.modules())
    assert model.decoder.training


def test_projection_variants_give_the_named_students():
    model = build_rd("convnext_pico", projection="guide")
    assert model.teacher.channels == (64, 128, 256)
    assert model.teacher.projection is not None
    assert student_params(model) == 15_383_168
    with torch.device("meta"):
        wide = build_rd("convnext_pico", student="wide_resnet50_2", projection=True)
    assert wide.teacher.channels == (256, 512, 1024) and student_params(wide) == 83_802_624


def test_student_receives_no_gradient_into_teacher():
    torch.manual_seed(0)
    model = build_rd("resnet18").train()
    t, s = model(torch.randn(2, 3, 64, 64))
    cosine_distillation_loss(t, s).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_loss_values():
    a = [torch.randn(3, 4, 5, 5) for _ in range(3)]
    assert cosine_distillation_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_distillation_loss(a, [-x for x in a]).item() == pytest.approx(6.0, abs=1e-5)  # 3 stages x (1-(-1))


# ----------------------------------------------------------------------------------- weights
def test_weights_from_local_file_roundtrip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet18")
    path = tmp_path / "r18.safetensors"
    save_file(source.state_dict(), str(path))
    teacher = create_backbone("resnet18", str(path), out_indices=(1, 2, 3))[0]
    assert torch.equal(teacher.conv1.weight, source.conv1.weight)
    pth = tmp_path / "r18.pth"
    torch.save({"state_dict": source.state_dict()}, pth)
    assert torch.equal(create_backbone("resnet18", str(pth), out_indices=(1, 2, 3))[0].layer3[0].conv1.weight,
                       source.layer3[0].conv1.weight)


def test_weights_for_other_architecture_names_first_mismatch(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), path)
    # resnet34 holds every resnet18 tensor with the same shape, plus extra blocks: the first extra names it.
    with pytest.raises(RDError, match=r"'layer1\.2\.conv1\.weight'.*first mismatch"):
        create_backbone("resnet18", str(path), out_indices=(1, 2, 3))[0]
    path_wide = tmp_path / "r50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), path_wide)
    with pytest.raises(RDError, match=r"'layer1\.0\.conv1\.weight' has shape \(64, 64, 1, 1\)"):
        create_backbone("resnet18", str(path_wide), out_indices=(1, 2, 3))
    path2 = tmp_path / "c.pth"
    torch.save(timm.create_model("convnext_atto").state_dict(), path2)
    with pytest.raises(RDError, match="'conv1.weight' is missing"):
        create_backbone("resnet18", str(path2), out_indices=(1, 2, 3))


def test_missing_weights_file(tmp_path):
    with pytest.raises(RDError, match="does not exist"):
        build_rd("resnet18", str(tmp_path / "nope.pth"))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f)
    with pytest.raises(RDError, match="Refusing to load"):
        build_rd("resnet18", str(path))


def test_unknown_backbone_suggests_names():
    with pytest.raises(RDError, match="convnext_pico"):
        build_rd("convnext_pic")


def test_efficientnet_lite0_imagenet_is_real():
    """The offline ImageNet teacher classifies scikit-image's chelsea as a cat."""
    from skimage import data
    from skimage.transform import resize

    from rd.data import IMAGENET_MEAN, IMAGENET_STD
    from rd.method.weights import _efficientnet_lite0_state_dict

    with torch.device("meta"):
        shape_model = timm.create_model("efficientnet_lite0")
    full = timm.create_model("efficientnet_lite0", pretrained=True,
                             pretrained_cfg_overlay={"state_dict": _efficientnet_lite0_state_dict(shape_model)[0]}).eval()
    img = resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    x = (torch.from_numpy(img).permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        top = full(x[None]).softmax(-1)[0].argmax().item()
    assert 281 <= top <= 285  # ImageNet's domestic cat classes
    teacher = build_rd("efficientnet_lite0", "imagenet").teacher
    with torch.no_grad():
        inter = full.forward_intermediates(x[None], indices=(1, 2, 3), intermediates_only=True)
        feats = teacher(x[None])
    for a, b in zip(inter, feats):
        torch.testing.assert_close(a, b)
