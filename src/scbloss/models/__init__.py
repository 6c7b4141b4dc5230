"""Detectors built on the detection core, selected by name."""

from __future__ import annotations

from torch import nn

from ..detection.criterion import RefineDetCriterion, SingleShotCriterion
from ..detection.priors import ssd_layout
from .base import SingleShotDetector
from .dssd import DSSD
from .fssd import FSSD
from .pretrained import VGG16_IMAGENET_URL, load_vgg16_imagenet, read_state_dict
from .refinedet import RefineDet
from .ssd import SSD

_FAMILIES = {
    "ssd300": SSD, "ssd512": SSD, "fssd300": FSSD, "fssd512": FSSD, "dssd321": DSSD, "dssd513": DSSD,
    "refinedet320": RefineDet,
}
MODELS = tuple(_FAMILIES)
_DEFAULT_PRIORS = {"dssd321": "coco", "dssd513": "coco"}  # DSSD is a COCO detector in the paper


def build_model(
    name: str,
    num_classes: int,
    width: float = 1.0,
    dataset: str = "voc",
    pretrained_backbone: str | None = None,
    batch_norm: bool = False,
) -> SingleShotDetector:
    """A detector by name; ``num_classes`` includes the background (21 for VOC, 81 for COCO).

    ``dataset`` ('voc' or 'coco') picks the prior sizes of that dataset's recipe (DSSD has COCO's only);
    ``width`` scales every channel count (for CPU toy runs) without changing the prior layout;
    ``pretrained_backbone`` is a local path or URL of torchvision's ImageNet VGG16 state dict (VGG detectors) or
    ResNet-101 state dict (DSSD); ``batch_norm`` adds BatchNorm to the VGG trunk for training from scratch.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    layout = ssd_layout(name, _DEFAULT_PRIORS.get(name, dataset))
    model = _FAMILIES[name](layout, num_classes, width, batch_norm)
    if pretrained_backbone is not None:
        state = read_state_dict(pretrained_backbone)
        if isinstance(model, DSSD):
            load_resnet101_imagenet(model.trunk, state, str(pretrained_backbone))
        else:
            load_vgg16_imagenet(model.trunk, state, source=str(pretrained_backbone))
    return model


def build_criterion(name: str, weighting: str = "scb", variant: str = "", **loss_options):
    """The training loss of a detector: callable(outputs, model, targets) -> {loss_cls, loss_loc, num_pos, ...}.

    ``variant`` selects RefineDet's modules the weighting applies to: 'arm' (default) or 'arm_odm'.
    """
    if name == "refinedet320":
        return RefineDetCriterion(weighting=weighting, scb_on=variant or "arm", **loss_options)
    if variant:
        raise ValueError(f"{name}: no variant {variant!r} (variants exist for refinedet320 only)")
    return SingleShotCriterion(weighting=weighting, **loss_options)


def load_resnet101_imagenet(trunk: nn.Module, state: dict, source: str) -> None:
    """torchvision's resnet101 state dict into the DSSD trunk (the classifier is dropped)."""
    wanted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    mismatched = [k for k, v in wanted.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(wanted))
    if mismatched or missing:
        raise ValueError(f"{source}: not a torchvision ResNet-101 state dict for this trunk "
                         f"(shape mismatch: {mismatched[:2]}, missing: {missing[:2]}; ImageNet weights need width=1.0)")
    trunk.load_state_dict(wanted)


__all__ = ["MODELS", "SSD", "FSSD", "DSSD", "RefineDet", "VGG16_IMAGENET_URL", "build_criterion", "build_model",
           "load_resnet101_imagenet", "load_vgg16_imagenet", "read_state_dict"]
