"""Building a registered detector, its loss and its backbone weights by name (see :mod:`scbloss.detectors`)."""

from __future__ import annotations

from .. import detectors, recipes
from ..detectors.backbones import XAVIER, backbone_weights
from .base import SingleShotDetector
from .pretrained import read_state_dict


def build_model(
    name: str,
    num_classes: int,
    width: float = 1.0,
    dataset: str = "voc",
    pretrained_backbone: str | None = None,
    batch_norm: bool = False,
    backbone_file: str | None = None,
    fc_weights: str | None = None,
    recipe: str = "original",
) -> SingleShotDetector:
    """A detector by name; ``num_classes`` includes the background (21 for VOC, 81 for COCO).

    ``dataset`` ('voc' or 'coco') picks the prior sizes of that dataset's recipe; ``width`` scales every channel
    count (for CPU toy runs) without changing the prior layout; ``batch_norm`` adds BatchNorm to a VGG trunk for
    training from scratch. ``pretrained_backbone`` names backbone weights the detector declares (see
    scbloss.detectors.backbones), read from ``backbone_file`` (a path or URL) when given, else downloaded from
    their URL; ``fc_weights`` is Caffe's reduced fc6/fc7 for a VGG16 backbone (a path or URL in ssd.pytorch's
    vgg16_reducedfc.pth layout; None: the file the weights publish, if any; "xavier": none, Xavier-initialised).
    ``recipe`` (scbloss.recipes) turns the prior sizes into boxes as that recipe's code does, and initialises the
    new layers as its code does (``Recipe.init_for``).
    """
    spec = detectors.get(name)
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    settings = recipes.recipe(recipe)
    layout = settings.layout(spec.layout(dataset))
    model = detectors.resolve(spec.network)(layout, num_classes, width, batch_norm)
    init = settings.init_for(spec, dataset)
    if init is not None:
        detectors.resolve(init)(model)
    if pretrained_backbone is None:
        if backbone_file or fc_weights:
            raise ValueError(f"{name}: backbone_file and fc_weights need pretrained_backbone (which weights they are)")
        return model
    if pretrained_backbone not in spec.backbone_weights:
        offered = ", ".join(spec.backbone_weights) or "none"
        raise ValueError(f"{name}: no backbone weights {pretrained_backbone!r} (it takes {offered})")
    weights = backbone_weights(pretrained_backbone)
    source = backbone_file or weights.url
    fc_source = weights.fc_url if fc_weights is None else fc_weights
    fc_state = read_state_dict(fc_source) if fc_source and fc_source != XAVIER else None
    detectors.resolve(weights.loader)(model, read_state_dict(source), str(source), fc_state, str(fc_source))
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
