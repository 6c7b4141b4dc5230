"""SSD prior (default) boxes generated from a layout description (:mod:`scbloss.detection.layout`)."""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_convert

from .layout import PriorLayout


def _cell_shapes(layout: PriorLayout, level: int) -> torch.Tensor:
    """(w, h) of the priors of one cell, in the SSD order: small square, large square, then each ratio and its inverse.

    A max size of 0 leaves out the large square (RefineDet's anchors: one size, ratios 1, 2 and 1/2).
    """
    size = layout.image_size
    small = layout.min_sizes[level] / size
    shapes = [(small, small)]
    if layout.max_sizes[level]:
        large = math.sqrt(small * layout.max_sizes[level] / size)
        shapes.append((large, large))
    for ratio in layout.aspect_ratios[level]:
        root = math.sqrt(ratio)
        shapes += [(small * root, small / root), (small / root, small * root)]
    return torch.tensor(shapes, dtype=torch.float64)


def generate_priors(layout: PriorLayout, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All priors as a [A, 4] tensor in normalized xyxy, cell by cell, level by level."""
    levels = []
    for level, (fmap, step) in enumerate(zip(layout.feature_maps, layout.steps)):
        cells_per_image = layout.image_size / step
        centres = (torch.arange(fmap, dtype=torch.float64) + 0.5) / cells_per_image
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        centre_xy = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)  # row-major: y outer, x inner
        shapes = _cell_shapes(layout, level)
        if layout.clip == "wh":
            shapes = shapes.clamp(0.0, 1.0)
        cxcywh = torch.cat(
            [
                centre_xy[:, None, :].expand(-1, len(shapes), -1),
                shapes[None, :, :].expand(len(centre_xy), -1, -1),
            ],
            dim=2,
        ).reshape(-1, 4)
        levels.append(cxcywh)
    priors = torch.cat(levels)
    if layout.clip == "cxcywh":
        priors = priors.clamp(0.0, 1.0)
    return box_convert(priors, "cxcywh", "xyxy").to(dtype)


__all__ = ["PriorLayout", "generate_priors"]
