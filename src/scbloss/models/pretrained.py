"""Loading torchvision's ImageNet VGG16 / ResNet-101 weights into a detector's trunk, from a local file or a URL."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


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


def load_vgg16_imagenet(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Copy conv1_1..conv5_3 and SSD's decimated fc6/fc7 from torchvision's vgg16 state dict into ``model.trunk``.

    fc6 (4096 x 512*7*7) and fc7 (4096 x 4096) become 1024-channel convolutions by keeping every 4th unit and,
    for fc6, every 3rd kernel tap, which with dilation 6 covers the same field as the 7x7 original (SSD, Sec. 3).
    """
    trunk = model.trunk
    if trunk.batch_norm:
        raise ValueError(f"{source}: torchvision's VGG16 weights have no BatchNorm; build the model without batch_norm")
    conv_names = [name for name, module in trunk.features.named_children() if isinstance(module, nn.Conv2d)]
    expected = [f"features.{i}.{kind}" for i in conv_names for kind in ("weight", "bias")]
    expected += [f"classifier.{i}.{kind}" for i in (0, 3) for kind in ("weight", "bias")]
    missing = [key for key in expected if key not in state]
    if missing:
        raise ValueError(f"{source}: not a torchvision VGG16 state dict (missing {', '.join(missing[:3])})")
    own = trunk.state_dict()
    for index in conv_names:
        for kind in ("weight", "bias"):
            theirs = state[f"features.{index}.{kind}"]
            mine = own[f"features.{index}.{kind}"]
            if theirs.shape != mine.shape:
                raise ValueError(
                    f"{source}: features.{index}.{kind} has shape {list(theirs.shape)} but the trunk needs "
                    f"{list(mine.shape)} (ImageNet weights need width=1.0)"
                )
            own[f"features.{index}.{kind}"] = theirs
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)[::4, :, ::3, ::3]
    fc7 = state["classifier.3.weight"][::4, ::4]
    replacements = {
        "fc.1.weight": fc6,
        "fc.1.bias": state["classifier.0.bias"][::4],
        "fc.3.weight": fc7[:, :, None, None],
        "fc.3.bias": state["classifier.3.bias"][::4],
    }
    for key, value in replacements.items():
        if own[key].shape != value.shape:
            raise ValueError(
                f"{source}: decimated {key} is {list(value.shape)}, the trunk needs {list(own[key].shape)}"
            )
        own[key] = value.contiguous()
    trunk.load_state_dict(own)


def load_resnet101_imagenet(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """torchvision's resnet101 state dict into ``model.trunk`` (the classifier is dropped)."""
    trunk = model.trunk
    wanted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    mismatched = [k for k, v in wanted.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(wanted))
    if mismatched or missing:
        raise ValueError(
            f"{source}: not a torchvision ResNet-101 state dict for this trunk "
            f"(shape mismatch: {mismatched[:2]}, missing: {missing[:2]}; ImageNet weights need width=1.0)"
        )
    trunk.load_state_dict(wanted)


__all__ = ["load_resnet101_imagenet", "load_vgg16_imagenet", "read_state_dict"]
