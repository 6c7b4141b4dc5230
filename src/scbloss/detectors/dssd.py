"""DSSD321 and DSSD513 (Fu et al., 2017): SSD on ResNet-101 with deconvolution and prediction modules."""

from __future__ import annotations

from ..detection.layout import PriorLayout, scale_fractions, uniform_steps
from .registry import DetectorSpec, register

# Feature-map sizes are what torchvision's ResNet-101 (conv5 dilated, stride 16) and the SSD-style extra layers
# give at 321 / 513 px; the DSSD paper's Caffe ResNet pads differently and lists 40, 20, 10, 5, 3, 1 for DSSD321.
# Aspect ratios 1.6, 2 and 3 on every level (DSSD, Sec. 3.2); scales follow SSD300 / SSD512 on COCO
# (torchvision's 0.07 ... 1.05 and ssd.pytorch's 0.04 ... 1.06 fractions of the input).
_MAPS_321 = (41, 21, 11, 6, 3, 1)
_MAPS_513 = (65, 33, 17, 9, 5, 3, 1)
DSSD321_LAYOUT = PriorLayout(
    321,
    _MAPS_321,
    uniform_steps(321, _MAPS_321),
    *scale_fractions(321, (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)),
    ((1.6, 2, 3),) * 6,
)
DSSD513_LAYOUT = PriorLayout(
    513,
    _MAPS_513,
    uniform_steps(513, _MAPS_513),
    *scale_fractions(513, (0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06)),
    ((1.6, 2, 3),) * 7,
)

DSSD321 = register(
    DetectorSpec(
        name="dssd321",
        network="scbloss.models.dssd:DSSD",
        layouts={"voc": DSSD321_LAYOUT, "coco": DSSD321_LAYOUT},  # DSSD's recipe has COCO's sizes only
        backbone_weights=("resnet101_imagenet1k_v1",),
        summary="DSSD: ResNet-101 (conv5 dilated), SSD extras, deconvolution + prediction modules; 18312 priors",
    )
)

DSSD513 = register(
    DetectorSpec(
        name="dssd513",
        network="scbloss.models.dssd:DSSD",
        layouts={"voc": DSSD513_LAYOUT, "coco": DSSD513_LAYOUT},
        backbone_weights=("resnet101_imagenet1k_v1",),
        summary="DSSD at 513 px, 45752 priors",
    )
)

# DSSD's first stage (Caffe DSSD README "Train/Eval" 1 and 2; `ssd_coco_resnet_513.py`): SSD on the same trunk,
# extras and priors, heads on the SSD maps. A DSSD run the config chains to one of these (`train.stages`) starts its
# trunk and extras from it.
SSD321_RESNET = register(
    DetectorSpec(
        name="ssd321_resnet",
        network="scbloss.models.dssd:ResNetSSD",
        layouts=DSSD321.layouts,
        backbone_weights=("resnet101_imagenet1k_v1",),
        summary="SSD321 on ResNet-101 (DSSD321's first stage): prediction modules and heads on the SSD maps",
    )
)

SSD513_RESNET = register(
    DetectorSpec(
        name="ssd513_resnet",
        network="scbloss.models.dssd:ResNetSSD",
        layouts=DSSD513.layouts,
        backbone_weights=("resnet101_imagenet1k_v1",),
        summary="SSD513 on ResNet-101 (DSSD513's first stage)",
    )
)
