"""Training recipes: whose conventions a run trains and tests by.

A recipe is what a run's numbers are comparable to. ``original`` follows each detector's own paper scripts (the
cards of docs/recipes.md); ``authors`` follows the paper's released code (github.com/1243France/SCB_Loss, built on
mmdetection v1.0), which holds SSD300 and SSD512 only. The values a recipe sets in the training config (schedule,
backbone) live in the pipeline config's ``train.recipes`` block; what it changes in the code is here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .detection.layout import PriorLayout
from .detection.test_settings import TestSettings

if TYPE_CHECKING:
    from .detectors.registry import DetectorSpec, Reference


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    prior_generator: str  # scbloss.detection.layout.PriorLayout.generator
    # "ssd": torchvision's v2 SSD pipeline (data/transforms.py); "authors": data/authors_augment.py; "pytorchssd":
    # PytorchSSD's order (data/pytorchssd_augment.py). With detector_scripts, the default a detector may override.
    augmentation: str
    normalization: str  # the input normalisation of a run that starts from scratch (data/transforms.py)
    test: TestSettings | None  # how its code tests; None: as each detector's own scripts do (DetectorSpec.test)
    # None: the loss divides by the batch's positives (SSD); n: by each n images' own (mmdetection's per GPU)
    images_per_normalizer: int | None = None
    models: tuple[str, ...] | None = None  # the detectors it exists for (None: every one)
    # True: where a detector's own scripts train otherwise, by dataset family, the detector's augmentation and init
    # (DetectorSpec.augmentation, DetectorSpec.init), as ``test=None`` takes its DetectorSpec.test
    detector_scripts: bool = False

    def layout(self, layout: PriorLayout) -> PriorLayout:
        """A detector's prior sizes, turned into boxes as this recipe's code does."""
        if self.prior_generator == layout.generator:
            return layout
        return dataclasses.replace(layout, generator=self.prior_generator, clip="none")

    def test_settings(self, detector_test: TestSettings) -> TestSettings:
        return self.test or detector_test

    def augmentation_for(self, detector: DetectorSpec, family: str) -> str:
        """The training augmentation of ``detector`` on a dataset family ('voc', 'coco') by this recipe."""
        if self.detector_scripts:
            return detector.augmentation.get(family, self.augmentation)
        return self.augmentation

    def init_for(self, detector: DetectorSpec, family: str) -> Reference | None:
        """What initialises a newly built ``detector`` for a dataset family by this recipe, before any pretrained
        weights load: a callable(model) reference, or None for the network's own init."""
        return detector.init.get(family) if self.detector_scripts else None

    def check_model(self, model: str) -> str | None:
        """Why ``model`` cannot train by this recipe; None when it can."""
        if self.models is None or model in self.models:
            return None
        return f"the {self.name} recipe exists for {', '.join(self.models)} only, not {model} ({self.summary})"


RECIPES = {
    "original": Recipe(
        name="original",
        summary="each detector's own paper scripts (docs/recipes.md)",
        prior_generator="ssd",
        augmentation="ssd",
        normalization="imagenet",
        test=None,
        detector_scripts=True,
    ),
    "authors": Recipe(
        name="authors",
        summary="the paper's released code, 1243France/SCB_Loss (mmdetection v1.0)",
        prior_generator="mmdet_v1",  # SCB_Loss mmdet/models/anchor_heads/ssd_head.py L50-L89
        augmentation="authors",  # SCB_Loss configs/pascal_voc/ssd300_voc.py L50-L73
        normalization="mmdet_caffe",  # SCB_Loss configs/pascal_voc/ssd300_voc.py L49
        # SCB_Loss configs/pascal_voc/ssd300_voc.py L41-L45: score_thr 0.02, no nms_pre, NMS 0.45, 200 per image
        test=TestSettings(score_threshold=0.02, pre_nms_top_k=None, per_image=200),
        # configs/pascal_voc/ssd300_voc.py L88 imgs_per_gpu=8; mmdet/core/anchor/anchor_target.py L71 normalizes
        # each GPU's loss by its own positives (each image at least 1); DDP then averages the GPUs' gradients
        images_per_normalizer=8,
        models=("ssd300", "ssd512"),
    ),
}


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None


def training_augmentation(recipe_name: str, model: str, family: str) -> str:
    """The augmentation a run of ``model`` trains by on a dataset family ('voc', 'coco') by the named recipe."""
    from . import detectors

    return recipe(recipe_name).augmentation_for(detectors.get(model), family)


__all__ = ["RECIPES", "Recipe", "recipe", "training_augmentation"]
