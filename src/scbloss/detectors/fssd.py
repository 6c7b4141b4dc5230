"""FSSD300 and FSSD512 (Li and Zhou, 2017): SSD with a feature-fusion module and a new pyramid."""

from __future__ import annotations

from ..detection.layout import PriorLayout, uniform_steps
from .registry import DetectorSpec, register
from .ssd import SSD300_LAYOUTS, SSD300_MAPS, SSD300_RATIOS, SSD512_LAYOUTS, SSD512_MAPS, SSD512_RATIOS


def _with_ratio_3_below(layout: PriorLayout) -> PriorLayout:
    """SSD's sizes, with ratios 2 and 3 on every level but the last two (PytorchSSD's FSSD: 11620 / 32756 priors)."""
    ratios = ((2, 3),) * (len(layout.feature_maps) - 2) + ((2,),) * 2
    return PriorLayout(layout.image_size, layout.feature_maps, layout.steps, layout.min_sizes, layout.max_sizes, ratios)


def _caffe_fssd_coco(size: int, maps: tuple[int, ...], ratios) -> PriorLayout:
    """Caffe FSSD's COCO layout (lzx1413/CAFFE_SSD@fssd examples/fssd/fssd_coco.py L301-331, fssd_coco_512.py
    L299-334): a 7% / 15% first level, the others from 15% to 90% of the input in equal whole-percent steps, SSD's
    ratios, each step the input over the map (``steps = []``), never clipped (``clip = False``)."""
    step = (90 - 15) // (len(maps) - 2)
    percents = [7, *range(15, 91, step)]
    ends = [15, *(p + step for p in percents[1:])]
    return PriorLayout(
        size,
        maps,
        uniform_steps(size, maps),
        tuple(size * p / 100 for p in percents),
        tuple(size * p / 100 for p in ends),
        ratios,
        clip="none",
    )


FSSD300 = register(
    DetectorSpec(
        name="fssd300",
        network="scbloss.models.fssd:FSSD",
        # VOC: PytorchSSD's (the VOC 78.8 of Table 2); COCO: Caffe FSSD's, whose models gave Table 5's 27.1
        layouts={
            "voc": _with_ratio_3_below(SSD300_LAYOUTS["voc"]),
            "coco": _caffe_fssd_coco(300, SSD300_MAPS, SSD300_RATIOS),
        },
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="FSSD: conv4_3, fc7, conv7_2 fused at 38x38, BatchNorm, new pyramid; 11620 priors (VOC), 8732 (COCO)",
        # VOC: PytorchSSD's preproc (data/data_augment.py L169-220) and weights_init (train_test.py L149-174); COCO:
        # Caffe FSSD's, which are SSD's
        augmentation={"voc": "pytorchssd"},
        init={"voc": "scbloss.models.fssd:pytorchssd_init"},
    )
)

FSSD512 = register(
    DetectorSpec(
        name="fssd512",
        network="scbloss.models.fssd:FSSD",
        layouts={
            "voc": _with_ratio_3_below(SSD512_LAYOUTS["voc"]),
            "coco": _caffe_fssd_coco(512, SSD512_MAPS, SSD512_RATIOS),
        },
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        summary="FSSD at 512 px, 32756 priors (VOC), 24564 (COCO)",
        augmentation={"voc": "pytorchssd"},  # as FSSD300: PytorchSSD's VOC scripts train both sizes alike
        init={"voc": "scbloss.models.fssd:pytorchssd_init"},
    )
)
