"""SSD's training augmentation and test-time preprocessing with torchvision.transforms.v2."""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

# torchvision's ImageNet statistics, matching the VGG16 / ResNet weights the backbones load.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe's VGG16 (and torchvision's SSD): 0-255 RGB pixels minus the mean pixel (123, 117, 104), no scaling.
CAFFE_MEAN = (0.48235, 0.45882, 0.40784)
CAFFE_STD = (1 / 255, 1 / 255, 1 / 255)
# mmcv's Caffe VGG16 as the paper's released code feeds it (SCB_Loss configs/pascal_voc/ssd300_voc.py L47:
# mean [123.675, 116.28, 103.53], std [1, 1, 1], to_rgb=True): 0-255 RGB minus ImageNet's mean pixel.
MMDET_CAFFE_MEAN = tuple(v / 255 for v in (123.675, 116.28, 103.53))
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "caffe": (CAFFE_MEAN, CAFFE_STD),
    "mmdet_caffe": (MMDET_CAFFE_MEAN, CAFFE_STD),
}


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of [0, 1] pixels that a backbone's weights expect."""
    try:
        return NORMALIZATIONS[name]
    except KeyError:
        raise ValueError(f"unknown normalization {name!r}; choose one of {', '.join(NORMALIZATIONS)}") from None


def fill_colour(normalize) -> tuple[int, ...]:
    """The zoom-out canvas colour: the mean pixel, in 0-255."""
    mean, _ = normalize
    return tuple(round(255 * m) for m in mean)


# The min-IoU crop keeps at least min_scale (0.3) of each side, in whole pixels: a side under 1 / 0.3 pixels would
# leave a crop of width 0 (torchvision's RandomIoUCrop then divides by it).
MIN_TRAIN_SIDE = math.ceil(1 / v2.RandomIoUCrop().min_scale)


def too_small_to_train(file, width: int, height: int) -> str | None:
    """The problem of an image too small for the training crops; None when it is large enough."""
    if min(width, height) >= MIN_TRAIN_SIDE:
        return None
    return f"{file}: image is {width}x{height}, smaller than the {MIN_TRAIN_SIDE}-pixel side the training crops need"


def train_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Transform:
    """SSD's augmentation (Sec. 2.2): photometric distortion, zoom-out (x1-4, mean fill, p=0.5), min-IoU crop,
    resize, flip, normalize."""
    mean_pixel = fill_colour((mean, std))
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: mean_pixel, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
            v2.SanitizeBoundingBoxes(min_size=1.0),
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.SanitizeBoundingBoxes(),  # boxes the resize squeezed under a pixel
        ]
    )


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Transform:
    """Normalize, then resize to the model's input, bilinearly without antialiasing, in float: as torchvision's
    SSD does at test time (GeneralizedRCNNTransform: normalize, then interpolate) and as every SSD-family source
    resizes (Caffe's and mmcv's OpenCV bilinear, ssd.pytorch's cv2.resize), none of which antialiases."""
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
            v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR, antialias=False),
        ]
    )


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_TRAIN_SIDE",
    "eval_transform",
    "fill_colour",
    "normalization",
    "too_small_to_train",
    "train_transform",
]
