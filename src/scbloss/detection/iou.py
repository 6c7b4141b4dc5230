"""IoU of boxes against a fixed prior set, computed through the priors' shared coordinate intervals."""

from __future__ import annotations

import torch
from torchvision.ops import box_area


class PriorIntervals:
    """A prior set [A, 4] (xyxy) split into its distinct x-intervals and y-intervals.

    SSD's priors repeat the same few widths along every row and column of each grid: SSD300's 8732 priors have only
    ~400 distinct x-intervals. Intersections are computed once per distinct interval and broadcast, instead of once
    per (box, prior) pair as ``torchvision.ops.box_iou`` does; the arithmetic is the same, so the result equals
    box_iou's exactly (tested), at a third of its memory traffic.
    """

    def __init__(self, priors: torch.Tensor) -> None:
        if priors.dim() != 2 or priors.shape[-1] != 4:
            raise ValueError(f"priors must be [A, 4], got {list(priors.shape)}")
        self.priors = priors
        self.version = priors._version
        x_unique, self.x_index = torch.unique(priors[:, [0, 2]], dim=0, return_inverse=True)
        y_unique, self.y_index = torch.unique(priors[:, [1, 3]], dim=0, return_inverse=True)
        self.x1, self.x2 = x_unique[:, 0], x_unique[:, 1]
        self.y1, self.y2 = y_unique[:, 0], y_unique[:, 1]
        self.area = box_area(priors)

    def describes(self, priors: torch.Tensor) -> bool:
        """True when built from this very tensor, unmodified since."""
        return priors is self.priors and priors._version == self.version

    def iou(self, boxes: torch.Tensor) -> torch.Tensor:
        """IoU of boxes [S, 4] (xyxy) with every prior -> [S, A]."""
        boxes = boxes.to(self.priors.dtype)
        overlap_x = (torch.minimum(boxes[:, 2:3], self.x2) - torch.maximum(boxes[:, 0:1], self.x1)).clamp_(min=0)
        overlap_y = (torch.minimum(boxes[:, 3:4], self.y2) - torch.maximum(boxes[:, 1:2], self.y1)).clamp_(min=0)
        inter = overlap_x.index_select(1, self.x_index).mul_(overlap_y.index_select(1, self.y_index))
        union = (box_area(boxes)[:, None] + self.area).sub_(inter)
        return inter.div_(union)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of [..., 4] xyxy boxes, in box_area's arithmetic (so that IoUs equal box_iou's to the bit)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou_padded(boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """IoU of each image's boxes [B, G, 4] with priors [A, 4] shared by the images, or [B, A, 4] each image its own
    (RefineDet's refined anchors) -> [B, G, A].

    Plain broadcasting, no index or data-dependent shape, so it compiles into one fused kernel; the arithmetic is
    box_iou's, so the result equals box_iou's (and :class:`PriorIntervals`') exactly.
    """
    boxes = boxes.to(priors.dtype)
    own = priors[:, None] if priors.dim() == 3 else priors[None, None]  # [B or 1, 1, A, 4]
    box = boxes[:, :, None, :]
    overlap = (torch.minimum(box[..., 2:], own[..., 2:]) - torch.maximum(box[..., :2], own[..., :2])).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = _area(boxes)[..., None] + _area(own) - inter
    return inter / union


__all__ = ["PriorIntervals", "iou_padded"]
