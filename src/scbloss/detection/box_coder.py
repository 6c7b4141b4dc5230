"""SSD's centre-size box encoding with variances."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert


class BoxCoder:
    """Encodes xyxy boxes as offsets from xyxy priors and back, scaled by SSD's variances (0.1, 0.2).

    Equals torchvision's ``det_utils.BoxCoder(weights=(10, 10, 5, 5))`` up to the +1 pixel conventions it does not use.
    """

    def __init__(self, variances: tuple[float, float] = (0.1, 0.2)) -> None:
        self.center_variance, self.size_variance = variances

    def encode(self, boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """[..., 4] boxes and broadcastable [..., 4] priors, both xyxy -> [..., 4] regression targets."""
        box = box_convert(boxes, "xyxy", "cxcywh")
        prior = box_convert(priors, "xyxy", "cxcywh")
        centre = (box[..., :2] - prior[..., :2]) / (self.center_variance * prior[..., 2:])
        size = torch.log(box[..., 2:] / prior[..., 2:]) / self.size_variance
        return torch.cat([centre, size], dim=-1)

    def decode(self, offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: [..., 4] offsets and priors -> [..., 4] xyxy boxes."""
        prior = box_convert(priors, "xyxy", "cxcywh")
        centre = prior[..., :2] + offsets[..., :2] * self.center_variance * prior[..., 2:]
        size = prior[..., 2:] * torch.exp(offsets[..., 2:] * self.size_variance)
        return box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy")


__all__ = ["BoxCoder"]
