"""Detectors built on the detection core, selected by name."""

from __future__ import annotations

from torch import nn

from ..detection.priors import ssd_layout
from .pretrained import VGG16_IMAGENET_URL, load_vgg16_imagenet, read_state_dict
from .ssd import SSD

MODELS = ("ssd300", "ssd512")


def build_model(
    name: str,
    num_classes: int,
    width: float = 1.0,
    dataset: str = "voc",
    pretrained_backbone: str | None = None,
    batch_norm: bool = False,
) -> nn.Module:
    """A detector by name; ``num_classes`` includes the background (21 for VOC, 81 for COCO).

    ``dataset`` ('voc' or 'coco') picks the prior sizes of that dataset's recipe; ``width`` scales every channel
    count (for CPU toy runs) without changing the prior layout; ``pretrained_backbone`` is a local path or URL of
    torchvision's ImageNet VGG16 state dict; ``batch_norm`` adds BatchNorm to the trunk for training from scratch.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    model = SSD(ssd_layout(name, dataset), num_classes, width, batch_norm)
    if pretrained_backbone is not None:
        load_vgg16_imagenet(model.trunk, read_state_dict(pretrained_backbone), source=str(pretrained_backbone))
    return model


__all__ = ["MODELS", "SSD", "VGG16_IMAGENET_URL", "build_model", "load_vgg16_imagenet", "read_state_dict"]
