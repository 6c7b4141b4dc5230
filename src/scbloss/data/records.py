"""One record format for every dataset: an image file with its boxes in original pixels."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Bad dataset content; the message names the file and the problem."""


def undecodable(file, error: Exception) -> str:
    """The problem of an image file that does not decode."""
    return f"{file}: cannot decode image ({error})"


def size_mismatch(file, width: int, height: int, annotated_width: int, annotated_height: int) -> str | None:
    """The problem of an image whose decoded size is not its annotation's; None when they agree."""
    if (width, height) == (annotated_width, annotated_height):
        return None
    return f"{file}: image is {width}x{height}, annotation says {annotated_width}x{annotated_height}"


@dataclass
class ImageRecord:
    """One image. boxes: [N, 4] float32 xyxy in original pixels (0-based); labels: [N] int64 in 1..C.

    ``difficult`` (VOC) and ``crowd`` (COCO iscrowd) objects are left out of training and are not counted by the
    evaluation (neither a hit nor a miss).
    """

    image_id: int
    file: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    crowd: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def counted(self) -> np.ndarray:
        """Mask of the objects that count: neither difficult nor crowd."""
        return ~(self.difficult | self.crowd)


@dataclass
class DetectionSet:
    """Records plus what is needed to report on them: class names and, for COCO, the category ids and the JSON."""

    records: list[ImageRecord]
    class_names: list[str]
    kind: str  # "voc" or "coco"
    category_ids: list[int] = field(default_factory=list)  # label l (1-based) -> COCO category_ids[l - 1]
    annotation_file: Path | None = None
    dropped: int = 0  # degenerate boxes dropped while reading

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def sanitize_boxes(
    boxes: np.ndarray, width: int, height: int, source: str, max_x: float | None = None, max_y: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image, then drop those left degenerate (x2 <= x1 or y2 <= y1); log how many were dropped.

    Returns the clipped boxes and a keep mask. The policy is the same for every reader so counts agree.
    """
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), np.zeros(0, dtype=bool)
    clipped = boxes.astype(np.float32).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width if max_x is None else max_x)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height if max_y is None else max_y)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    changed = int((np.abs(clipped - boxes) > 0).any(axis=1).sum())
    if changed or not keep.all():
        log.warning("%s: clipped %d box(es) to the image, dropped %d degenerate", source, changed, int((~keep).sum()))
    return clipped, keep


# Our boxes -> mmdetection v1's, which the paper's released code trains on. VOC: it reads the corners and subtracts 1
# (SCB_Loss mmdet/datasets/xml_style.py L50-55, L73), as our reader does; COCO: [x, y, x + w - 1, y + h - 1]
# (mmdet/datasets/coco.py L78-81), where ours end at x + w.
_TO_MMDET_V1 = {"voc": (0.0, 0.0, 0.0, 0.0), "coco": (0.0, 0.0, -1.0, -1.0)}


def _mmdet_v1_offset(boxes, annotation_format: str):
    values = _TO_MMDET_V1[annotation_format]
    # a tensor otherwise (this module stays free of torch: the workflow imports it)
    return np.asarray(values, dtype=boxes.dtype) if isinstance(boxes, np.ndarray) else boxes.new_tensor(values)


def to_mmdet_v1(boxes, annotation_format: str):
    """Pixel boxes of our readers (array or tensor) as mmdetection v1 reads the same annotation."""
    return boxes + _mmdet_v1_offset(boxes, annotation_format)


def from_mmdet_v1(boxes, annotation_format: str):
    """The inverse of :func:`to_mmdet_v1`: mmdetection v1's inclusive pixel boxes in our readers' convention."""
    return boxes - _mmdet_v1_offset(boxes, annotation_format)


__all__ = [
    "DatasetError",
    "DetectionSet",
    "ImageRecord",
    "from_mmdet_v1",
    "sanitize_boxes",
    "size_mismatch",
    "to_mmdet_v1",
    "undecodable",
]
