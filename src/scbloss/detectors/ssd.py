"""SSD300 and SSD512 (Liu et al., 2016): VGG16, L2Norm on conv4_3, extra layers, 3x3 heads."""

from __future__ import annotations

from ..detection.layout import PriorLayout, sizes
from .registry import DetectorSpec, register

SSD300_MAPS = (38, 19, 10, 5, 3, 1)
SSD300_STEPS = sizes((8, 16, 32, 64, 100, 300))
SSD300_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD512_MAPS = (64, 32, 16, 8, 4, 2, 1)
SSD512_STEPS = sizes((8, 16, 32, 64, 128, 256, 512))
SSD512_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))

# The sizes of the SSD papers' Caffe recipes (ssd_pascal.py / ssd_coco.py), as ssd.pytorch's config.py lists them.
SSD300_LAYOUTS = {
    "voc": PriorLayout(
        300,
        SSD300_MAPS,
        SSD300_STEPS,
        sizes((30, 60, 111, 162, 213, 264)),
        sizes((60, 111, 162, 213, 264, 315)),
        SSD300_RATIOS,
    ),
    "coco": PriorLayout(
        300,
        SSD300_MAPS,
        SSD300_STEPS,
        sizes((21, 45, 99, 153, 207, 261)),
        sizes((45, 99, 153, 207, 261, 315)),
        SSD300_RATIOS,
    ),
}
SSD512_LAYOUTS = {
    "voc": PriorLayout(
        512,
        SSD512_MAPS,
        SSD512_STEPS,
        sizes((35, 76, 153, 230, 307, 384, 460)),
        sizes((76, 153, 230, 307, 384, 460, 537)),
        SSD512_RATIOS,
    ),
    "coco": PriorLayout(
        512,
        SSD512_MAPS,
        SSD512_STEPS,
        sizes((20, 51, 133, 215, 296, 378, 460)),
        sizes((51, 133, 215, 296, 378, 460, 542)),
        SSD512_RATIOS,
    ),
}

SSD300 = register(
    DetectorSpec(
        name="ssd300",
        network="scbloss.models.ssd:SSD",
        layouts=SSD300_LAYOUTS,
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="SSD on VGG16 (L2Norm conv4_3, dilated fc6/fc7), 8732 priors",
    )
)

SSD512 = register(
    DetectorSpec(
        name="ssd512",
        network="scbloss.models.ssd:SSD",
        layouts=SSD512_LAYOUTS,
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="SSD on VGG16 at 512 px, 24564 priors",
    )
)
