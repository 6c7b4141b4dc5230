"""Building a registered detector, its loss and its backbone weights by name (see :mod:`scbloss.detectors`)."""

from __future__ import annotations

from .. import detectors
from .base import SingleShotDetector
from .pretrained import read_state_dict


def build_model(
    name: str,
    num_classes: int,
    width: float = 1.0,
    dataset: str = "voc",
    pretrained_backbone: str | None = None,
    batch_norm: bool = False,
) -> SingleShotDetector:
    """A detector by name; ``num_classes`` includes the background (21 for VOC, 81 for COCO).

    ``dataset`` ('voc' or 'coco') picks the prior sizes of that dataset's recipe; ``width`` scales every channel
    count (for CPU toy runs) without changing the prior layout; ``pretrained_backbone`` is a local path or URL of
    the ImageNet state dict the detector's backbone loader takes; ``batch_norm`` adds BatchNorm to a VGG trunk
    for training from scratch.
    """
    spec = detectors.get(name)
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    model = detectors.resolve(spec.network)(spec.layout(dataset), num_classes, width, batch_norm)
    if pretrained_backbone is not None:
        if spec.backbone_loader is None:
            raise ValueError(f"{name}: declares no backbone weights loader, so pretrained_backbone cannot be used")
        state = read_state_dict(pretrained_backbone)
        detectors.resolve(spec.backbone_loader)(model, state, str(pretrained_backbone))
    return model


def build_criterion(name: str, weighting: str = "scb", variant: str = "", **loss_options):
    """The training loss of a detector: callable(outputs, model, targets) -> {loss_*, num_pos, ...}.

    ``variant`` is one of the detector's declared variants (RefineDet: 'arm', the default, or 'arm_odm').
    """
    spec = detectors.get(name)
    spec.check_variant(variant)
    if variant:
        loss_options["variant"] = variant
    return detectors.resolve(spec.criterion)(weighting=weighting, **loss_options)


__all__ = ["build_criterion", "build_model"]
