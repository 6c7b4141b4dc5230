"""SSD's training augmentation and test-time preprocessing with torchvision.transforms.v2."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

# torchvision's ImageNet statistics, matching the VGG16 / ResNet weights the backbones load.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Transform:
    """SSD's augmentation (Sec. 2.2): photometric distortion, zoom-out (x1-4, mean fill, p=0.5), min-IoU crop,
    resize, flip, normalize."""
    mean_pixel = tuple(round(255 * m) for m in mean)
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
    """Resize to the model's input and normalize."""
    return v2.Compose(
        [v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "train_transform"]
