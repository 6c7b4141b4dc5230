"""RefineDet320 (Zhang et al., 2018): an anchor refinement module and an object detection module on VGG16."""

from __future__ import annotations

from ..detection.layout import PriorLayout
from ..detection.test_settings import TestSettings
from .registry import DetectorSpec, register

# One anchor size per level (32, 64, 128, 256) with ratios 1, 2 and 1/2 on 40, 20, 10, 5 cells: 6375 anchors.
REFINEDET320_LAYOUT = PriorLayout(
    320, (40, 20, 10, 5), (8.0, 16.0, 32.0, 64.0), (32.0, 64.0, 128.0, 256.0), (0.0, 0.0, 0.0, 0.0), ((2,),) * 4
)

# Which modules the weighting applies to: the ARM only (the paper's Table 2) or ARM and ODM (its 78.0).
REFINEDET_VARIANTS = ("arm", "arm_odm")

REFINEDET320 = register(
    DetectorSpec(
        name="refinedet320",
        network="scbloss.models.refinedet:RefineDet",
        layouts={"voc": REFINEDET320_LAYOUT, "coco": REFINEDET320_LAYOUT},
        criterion="scbloss.detection.criterion:RefineDetCriterion",
        backbone_weights=("vgg16_caffe", "vgg16_caffe_mmcv", "vgg16_imagenet1k_v1"),
        variants=REFINEDET_VARIANTS,
        # sfzhang15/RefineDet examples/refinedet/VGG16_VOC2007_320.py L392-401: NMS 0.45 over the top 1000 per
        # class, 500 kept per image, confidence 0.01
        test=TestSettings(score_threshold=0.01, pre_nms_top_k=1000, per_image=500),
        summary="RefineDet: ARM on conv4_3/conv5_3/fc7/conv6_2, TCBs, ODM on refined anchors; 6375 anchors",
    )
)
