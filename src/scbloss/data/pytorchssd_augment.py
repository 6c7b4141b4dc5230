"""FSSD's VOC augmentation as PytorchSSD trains it, from torchvision's v2 steps in PytorchSSD's order.

Source: GitHub lzx1413/PytorchSSD at 320fe34 (master; the 0.4 branch's file is the same), ``data/data_augment.py``
``preproc`` (L169-220) with ``p`` from ``train_test.py`` L126 and L220-221 (0.6, for every network but RFB_mobile).
In order: crop (``_crop``, L196), photometric distortion of the crop (``_distort``, L197), expand with probability 0.6
(``_expand``, L198), mirror (L199), resize to size x size by one of five OpenCV interpolations drawn per image
(``preproc_for_test``, L159-162, L203), then every box whose width or height is not above 1% of the image's is
dropped (L204-211); if none is left, the sample is the original image, only resized (a fresh interpolation draw),
with all its boxes (L213-215); an image without boxes is only resized (L180-184).

The crop and the distortion are torchvision's v2 steps, as in the ``ssd`` pipeline (their differences to the
source are on the card, docs/recipes.md); the expand draws PytorchSSD's size and aspect (:class:`PytorchSSDExpand`),
which v2's RandomZoomOut cannot. The device path (data/device_augment.py) replays the draws of this very pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .iou_crop import RandomIoUCrop
from .transforms import IMAGENET_MEAN, IMAGENET_STD, PYTORCHSSD_INTERPOLATIONS, RandomInterpolationResize, fill_colour

EXPAND_PROB = 0.6  # train_test.py L126, given to preproc at L220-221 (data_augment.py L171-175); _expand's test L116
EXPAND_SCALE = (1.0, 4.0)  # data_augment.py L121
EXPAND_TRIALS = 50  # data_augment.py L120
MIN_BOX_SIDE = 0.01  # data_augment.py L209: width and height each above 1% of the image's


class PytorchSSDExpand(v2.RandomZoomOut):
    """PytorchSSD's ``_expand`` (data_augment.py L115-147): a mean-filled canvas scale x ratio wide and scale / ratio
    high (scale uniform in 1-4, ratio the square root of a uniform in [max(0.5, 1 / scale^2), min(2, scale^2)]),
    the image at a uniform whole-pixel offset. Applied with probability ``p``; its ``padding`` is RandomZoomOut's."""

    def make_params(self, flat_inputs: list) -> dict:
        image = next(item for item in flat_inputs if isinstance(item, tv_tensors.Image))
        height, width = image.shape[-2:]
        low, high = EXPAND_SCALE
        for _ in range(EXPAND_TRIALS):
            scale = low + (high - low) * float(torch.rand(1, dtype=torch.float64))
            min_ratio, max_ratio = max(0.5, 1.0 / scale / scale), min(2.0, scale * scale)
            ratio = math.sqrt(min_ratio + (max_ratio - min_ratio) * float(torch.rand(1, dtype=torch.float64)))
            if scale * ratio < 1 or scale / ratio < 1:  # only by rounding: the ratio's range keeps both >= 1
                continue
            canvas_w, canvas_h = int(scale * ratio * width), int(scale / ratio * height)
            left = int(torch.randint(canvas_w - width + 1, (1,)))  # random.randint's inclusive high
            top = int(torch.randint(canvas_h - height + 1, (1,)))
            return dict(padding=[left, top, canvas_w - width - left, canvas_h - height - top])
        return dict(padding=[0, 0, 0, 0])  # PytorchSSD would fail here (no canvas); unreachable but by rounding


class Preproc(v2.Compose):
    """``transforms``, unless the image has no box or they leave none: then ``fallback``, the original image only
    resized, with all its boxes (data_augment.py L180-184, L213-215). ``fell_back`` tells which ran last."""

    def __init__(self, transforms: list, fallback: v2.Transform) -> None:
        super().__init__(transforms)
        self.fallback = fallback
        self.fell_back = False

    def forward(self, *inputs):
        image, target = inputs
        self.fell_back = len(target["boxes"]) == 0
        if not self.fell_back:
            out = super().forward(image, target)
            self.fell_back = len(out[1]["boxes"]) == 0
            if not self.fell_back:
                return out
        return self.fallback(image, target)


def pytorchssd_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Preproc:
    """PytorchSSD's ``preproc`` for FSSD: ``(image, target) -> (float image [3, size, size], target)``."""
    mean_pixel = fill_colour((mean, std))
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    # v2 keeps the boxes whose sides are >= min_size; PytorchSSD keeps those above 1% (strictly, L209): for float32
    # boxes, >= the next float32 above 1% of the output side is that rule. The crop's dropped boxes (zeroed by
    # RandomIoUCrop) go here too, having no width.
    above = float(np.nextafter(np.float32(MIN_BOX_SIDE * size), np.float32(np.inf)))
    return Preproc(
        [
            RandomIoUCrop(),
            v2.RandomPhotometricDistort(p=0.5),
            PytorchSSDExpand(fill={tv_tensors.Image: mean_pixel, "others": 0}, p=EXPAND_PROB),
            v2.RandomHorizontalFlip(p=0.5),
            RandomInterpolationResize(size, PYTORCHSSD_INTERPOLATIONS),
            v2.SanitizeBoundingBoxes(min_size=above),
            *finish,
        ],
        fallback=v2.Compose([RandomInterpolationResize(size, PYTORCHSSD_INTERPOLATIONS), *finish]),
    )


@dataclass
class PytorchSSDDraws:
    """One sample's draws in PytorchSSD's order, what the device applies to its pixels."""

    photometric: dict | None  # RandomPhotometricDistort's parameters, applied to the crop; None: the fallback's none
    crop: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the image, exclusive edges (the whole image: no crop)
    padding: tuple[int, int, int, int]  # the expand's fill (left, top, right, bottom) around the crop
    flip: bool
    interpolation: str  # a name of scbloss.data.transforms.TORCH_INTERPOLATION


__all__ = [
    "EXPAND_PROB",
    "MIN_BOX_SIDE",
    "Preproc",
    "PytorchSSDDraws",
    "PytorchSSDExpand",
    "pytorchssd_transform",
]
