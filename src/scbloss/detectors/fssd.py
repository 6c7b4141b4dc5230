"""FSSD300 and FSSD512 (Li and Zhou, 2017): SSD with a feature-fusion module and a new pyramid."""

from __future__ import annotations

from ..detection.layout import PriorLayout
from .registry import DetectorSpec, register
from .ssd import SSD300_LAYOUTS, SSD512_LAYOUTS


def _with_ratio_3_below(layout: PriorLayout) -> PriorLayout:
    """SSD's sizes, with ratios 2 and 3 on every level but the last two (FSSD: 11620 / 32756 priors)."""
    ratios = ((2, 3),) * (len(layout.feature_maps) - 2) + ((2,),) * 2
    return PriorLayout(layout.image_size, layout.feature_maps, layout.steps, layout.min_sizes, layout.max_sizes, ratios)


FSSD300 = register(
    DetectorSpec(
        name="fssd300",
        network="scbloss.models.fssd:FSSD",
        layouts={family: _with_ratio_3_below(layout) for family, layout in SSD300_LAYOUTS.items()},
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="FSSD: conv4_3, fc7, conv7_2 fused at 38x38, BatchNorm, new pyramid; 11620 priors",
    )
)

FSSD512 = register(
    DetectorSpec(
        name="fssd512",
        network="scbloss.models.fssd:FSSD",
        layouts={family: _with_ratio_3_below(layout) for family, layout in SSD512_LAYOUTS.items()},
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="FSSD at 512 px, 32756 priors",
    )
)
