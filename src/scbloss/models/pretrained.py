"""Loading backbone weights (see scbloss.detectors.backbones) into a detector's trunk, from a local file or a URL."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def read_state_dict(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a local path or an http(s) URL (downloaded once into ``cache_dir``, hash-checked by name)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return torch.hub.load_state_dict_from_url(
            text,
            model_dir=None if cache_dir is None else str(cache_dir),
            map_location="cpu",
            check_hash=True,
            progress=False,
            weights_only=True,
        )
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights: no such file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is no checkpoint
        raise ValueError(f"backbone weights: {path} is not a readable PyTorch state dict ({error})") from error


def _copy(own: dict, key: str, value: torch.Tensor, source: str, theirs: str) -> None:
    if own[key].shape != value.shape:
        raise ValueError(
            f"{source}: {theirs} has shape {list(value.shape)} but the trunk's {key} needs {list(own[key].shape)} "
            "(pretrained weights need width=1.0)"
        )
    own[key] = value.contiguous()


def load_vgg16(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str = "state dict",
    fc_state: dict | None = None,
    fc_source: str = "fc weights",
) -> None:
    """conv1_1..conv5_3 from a torchvision-layout VGG16 state dict into ``model.trunk``; then fc6/fc7.

    fc6/fc7 come from ``fc_state`` when given: Caffe's reduced fc layers in ssd.pytorch's layout (``31.*`` the
    1024x512x3x3 fc6, ``33.*`` the 1024x1024x1x1 fc7). Otherwise from the weights' own classifier, decimated as in
    SSD (Sec. 3: every 4th unit and, for fc6, every 3rd kernel tap, which with its dilation covers the original
    7x7 field) when it holds numbers; torchvision's IMAGENET1K_FEATURES port has NaN there, and then fc6/fc7 keep
    their Xavier initialisation, as torchvision's SSD does.
    """
    trunk = model.trunk
    if trunk.batch_norm:
        raise ValueError(f"{source}: VGG16's pretrained weights have no BatchNorm; build the model without batch_norm")
    conv_names = [name for name, module in trunk.features.named_children() if isinstance(module, nn.Conv2d)]
    missing = [f"features.{i}.{k}" for i in conv_names for k in ("weight", "bias") if f"features.{i}.{k}" not in state]
    if missing:
        raise ValueError(f"{source}: not a VGG16 state dict (missing {', '.join(missing[:3])})")
    own = trunk.state_dict()
    for index in conv_names:
        for kind in ("weight", "bias"):
            _copy(
                own, f"features.{index}.{kind}", state[f"features.{index}.{kind}"], source, f"features.{index}.{kind}"
            )
    if fc_state is not None:
        wanted = {
            "fc.1.weight": "31.weight",
            "fc.1.bias": "31.bias",
            "fc.3.weight": "33.weight",
            "fc.3.bias": "33.bias",
        }
        absent = [theirs for theirs in wanted.values() if theirs not in fc_state]
        if absent:
            raise ValueError(
                f"{fc_source}: not Caffe's reduced fc6/fc7 in ssd.pytorch's layout (missing {', '.join(absent)})"
            )
        for key, theirs in wanted.items():
            _copy(own, key, fc_state[theirs], fc_source, theirs)
    elif all(f"classifier.{i}.{k}" in state for i in (0, 3) for k in ("weight", "bias")):
        classifier = [state[f"classifier.{i}.{k}"] for i in (0, 3) for k in ("weight", "bias")]
        if all(bool(torch.isfinite(t).all()) for t in classifier):
            fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3]
            fc7 = state["classifier.3.weight"][::4, ::4]
            _copy(own, "fc.1.weight", fc6, source, "classifier.0.weight (decimated)")
            _copy(own, "fc.1.bias", state["classifier.0.bias"][::4], source, "classifier.0.bias (decimated)")
            _copy(own, "fc.3.weight", fc7[:, :, None, None], source, "classifier.3.weight (decimated)")
            _copy(own, "fc.3.bias", state["classifier.3.bias"][::4], source, "classifier.3.bias (decimated)")
        else:
            log.info("%s: its classifier is not numbers (NaN): fc6/fc7 keep their Xavier initialisation", source)
    trunk.load_state_dict(own)


def load_vgg16_mmcv(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str = "state dict",
    fc_state: dict | None = None,
    fc_source: str = "fc weights",
) -> None:
    """mmcv's Caffe VGG16 (``open-mmlab://vgg16_caffe``) into ``model.trunk``: mmdetection's SSDVGG numbers its
    layers as torchvision's VGG16 does (conv1_1 ``features.0`` .. conv5_3 ``features.28``) and continues with
    pool5 (30), fc6 (``features.31``, 1024x512x3x3) and fc7 (``features.33``, 1024x1024x1x1), which the file holds:
    Caffe's reduced fc layers. A checkpoint wrapped as {"state_dict": ...} or saved from DataParallel
    ("module." names) is read as mmcv reads it."""
    if fc_state is not None:
        raise ValueError(f"{fc_source}: {source} holds its own fc6/fc7; give no fc_weights with it")
    state = state.get("state_dict", state)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    fc = {f"features.31.{k}": f"31.{k}" for k in ("weight", "bias")} | {
        f"features.33.{k}": f"33.{k}" for k in ("weight", "bias")
    }
    absent = [key for key in fc if key not in state]
    if absent:
        raise ValueError(f"{source}: not mmcv's VGG16 in SSDVGG's layout (missing {', '.join(absent)})")
    convs = {key: value for key, value in state.items() if key not in fc}
    load_vgg16(model, convs, source, {theirs: state[key] for key, theirs in fc.items()}, source)


def load_resnet101(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str = "state dict",
    fc_state: dict | None = None,
    fc_source: str = "fc weights",
) -> None:
    """torchvision's resnet101 state dict into ``model.trunk`` (the classifier is dropped)."""
    if fc_state is not None:
        raise ValueError(f"{fc_source}: fc_weights are VGG16's fc6/fc7; a ResNet-101 backbone has none")
    trunk = model.trunk
    wanted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    mismatched = [k for k, v in wanted.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(wanted))
    if mismatched or missing:
        raise ValueError(
            f"{source}: not a torchvision ResNet-101 state dict for this trunk "
            f"(shape mismatch: {mismatched[:2]}, missing: {missing[:2]}; pretrained weights need width=1.0)"
        )
    trunk.load_state_dict(wanted)


__all__ = ["load_resnet101", "load_vgg16", "load_vgg16_mmcv", "read_state_dict"]
