"""SSD's min-IoU crop (torchvision's ``v2.RandomIoUCrop``) with its trial loop in NumPy."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def iou_crop_params(step: v2.RandomIoUCrop, flat_inputs: list) -> dict:
    """``step.make_params(flat_inputs)`` to the bit, in a fifth of the time.

    torchvision's loop runs about 80 trials per image, each a dozen tensor operations on two-element tensors: most
    of a worker's time. This draws the same random numbers in the same order (the same ``torch`` calls) and
    repeats its arithmetic in float32 NumPy scalars, so the crop and the kept boxes are torchvision's exactly
    (tests/test_device_augment.py compares them over thousands of draws).
    """
    boxes = next(item for item in flat_inputs if isinstance(item, tv_tensors.BoundingBoxes))
    orig_h, orig_w = boxes.canvas_size
    xyxy = F.convert_bounding_box_format(
        boxes.as_subclass(torch.Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY
    )
    xyxy = xyxy.numpy()
    if not np.issubdtype(xyxy.dtype, np.floating):  # torch's arithmetic promotes integer boxes to float32
        xyxy = xyxy.astype(np.float32)
    dtype = xyxy.dtype.type
    cx, cy = dtype(0.5) * (xyxy[:, 0] + xyxy[:, 2]), dtype(0.5) * (xyxy[:, 1] + xyxy[:, 3])
    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    width, height = np.float32(orig_w), np.float32(orig_h)
    while True:
        min_overlap = step.options[int(torch.randint(low=0, high=len(step.options), size=(1,)))]
        if min_overlap >= 1.0:
            return {}
        for _ in range(step.trials):
            r = (step.min_scale + (step.max_scale - step.min_scale) * torch.rand(2)).numpy()
            new_w, new_h = int(width * r[0]), int(height * r[1])
            if not (step.min_aspect_ratio <= new_w / new_h <= step.max_aspect_ratio):
                continue
            r = torch.rand(2).numpy()
            left, top = int(np.float32(orig_w - new_w) * r[0]), int(np.float32(orig_h - new_h) * r[1])
            right, bottom = left + new_w, top + new_h
            if left == right or top == bottom:
                continue
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            if not inside.any():
                continue
            crop = np.array([left, top, right, bottom], dtype=dtype)
            kept = xyxy[inside]
            wh = np.clip(np.minimum(kept[:, 2:], crop[2:]) - np.maximum(kept[:, :2], crop[:2]), 0, None)
            inter = wh[:, 0] * wh[:, 1]
            iou = inter / (areas[inside] + (crop[2] - crop[0]) * (crop[3] - crop[1]) - inter)
            if iou.max() < dtype(min_overlap):
                continue
            return dict(top=top, left=left, height=new_h, width=new_w, is_within_crop_area=torch.from_numpy(inside))


class RandomIoUCrop(v2.RandomIoUCrop):
    """torchvision's transform, drawing its parameters with :func:`iou_crop_params`: the same crops and boxes, to
    the bit, for the same random state (torchvision's loop took 13 of a training image's 30 ms of augmentation)."""

    def make_params(self, flat_inputs: list) -> dict:
        return iou_crop_params(self, flat_inputs)


__all__ = ["RandomIoUCrop", "iou_crop_params"]
