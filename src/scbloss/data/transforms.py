"""SSD's training augmentation and test-time preprocessing with torchvision.transforms.v2."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .iou_crop import RandomIoUCrop

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


# The OpenCV interpolations a source's training resize draws from, one per image with equal probabilities, none of
# them antialiasing. Caffe SSD and the Caffe FSSD, DSSD and RefineDet scripts built on it: the train data layer's
# resize_param (lzx1413/CAFFE_SSD@fssd examples/ssd/ssd_pascal.py L183-188; the same five in fssd_*.py, in
# chengyangfu/caffe@dssd's and sfzhang15/RefineDet's scripts), drawn by src/caffe/util/im_transforms.cpp L360-384.
# PytorchSSD: data/data_augment.py L160-162.
CAFFE_INTERPOLATIONS = ("linear", "area", "nearest", "cubic", "lanczos4")
PYTORCHSSD_INTERPOLATIONS = ("linear", "cubic", "area", "nearest", "lanczos4")
# Each as torch.nn.functional.interpolate resizes it. torch has no Lanczos kernel for tensors, so LANCZOS4 resizes
# bicubically (torch's cubic is OpenCV's, a = -0.75) on both augmentation paths alike: the draw stays the source's,
# and the device path replays the CPU path's pixels. "area" is torch's adaptive average (whole-pixel bins).
TORCH_INTERPOLATION = {
    "linear": "bilinear",
    "area": "area",
    "nearest": "nearest",
    "cubic": "bicubic",
    "lanczos4": "bicubic",
}


def resize_pixels(image: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """0-255 pixels [..., C, H, W] (uint8, or float on the 0-255 scale) resized to size x size as OpenCV resizes a
    uint8 image: by one of :data:`TORCH_INTERPOLATION`'s names, without antialiasing, rounded and saturated to
    0-255; returned in the input's dtype."""
    mode = TORCH_INTERPOLATION[interpolation]
    options = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    if mode == "bilinear" and image.dtype == torch.uint8 and image.device.type == "cpu":
        # torch's uint8 kernel (fixed-point weights, as OpenCV's uint8 resize): its float one rounds differently
        # with the number of threads (a worker's 1 against the main process's), and a run must not depend on that
        x = image.reshape(-1, *image.shape[-3:])
        return nnf.interpolate(x, size=(size, size), mode=mode, antialias=False, **options).reshape(
            *image.shape[:-2], size, size
        )
    x = image.float().reshape(-1, *image.shape[-3:])
    out = nnf.interpolate(x, size=(size, size), mode=mode, **options).round_().clamp_(0, 255)
    return out.reshape(*image.shape[:-2], size, size).to(image.dtype)


class RandomInterpolationResize(v2.Transform):
    """Resize to size x size by an interpolation drawn uniformly from ``interpolations`` (names of
    :data:`TORCH_INTERPOLATION`), per image, without antialiasing (:func:`resize_pixels`)."""

    def __init__(self, size: int, interpolations: tuple[str, ...] = CAFFE_INTERPOLATIONS) -> None:
        super().__init__()
        unknown = set(interpolations) - set(TORCH_INTERPOLATION)
        if unknown or not interpolations:
            raise ValueError(f"interpolations must be among {', '.join(TORCH_INTERPOLATION)}, got {interpolations}")
        self.size, self.interpolations = size, tuple(interpolations)

    def make_params(self, flat_inputs: list) -> dict:
        return {"interpolation": self.interpolations[int(torch.randint(len(self.interpolations), (1,)))]}

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.Image):
            if inpt.device.type == "meta":  # the workers' shape-only image (data/device_augment.py)
                out = torch.empty(*inpt.shape[:-2], self.size, self.size, dtype=inpt.dtype, device="meta")
            else:
                out = resize_pixels(inpt.as_subclass(torch.Tensor), self.size, params["interpolation"])
            return tv_tensors.wrap(out, like=inpt)
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            return F.resize(inpt, [self.size, self.size])
        return inpt


def train_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Transform:
    """SSD's augmentation (Sec. 2.2): photometric distortion, zoom-out (x1-4, mean fill, p=0.5), min-IoU crop,
    resize by one of Caffe's five interpolations drawn per image (no antialiasing), flip, normalize."""
    mean_pixel = fill_colour((mean, std))
    return v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill={tv_tensors.Image: mean_pixel, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            RandomIoUCrop(),
            v2.SanitizeBoundingBoxes(min_size=1.0),
            RandomInterpolationResize(size, CAFFE_INTERPOLATIONS),
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
    "CAFFE_INTERPOLATIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_TRAIN_SIDE",
    "PYTORCHSSD_INTERPOLATIONS",
    "RandomInterpolationResize",
    "TORCH_INTERPOLATION",
    "eval_transform",
    "fill_colour",
    "normalization",
    "resize_pixels",
    "too_small_to_train",
    "train_transform",
]
