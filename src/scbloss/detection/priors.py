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
    if layout.generator == "mmdet_v1":
        return _mmdet_v1_anchors(layout).div(layout.image_size).to(dtype)
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


def _mmdet_v1_anchors(layout: PriorLayout) -> torch.Tensor:
    """mmdetection v1.0's SSD anchors in pixels, as boxes with exclusive right/bottom edges ([A, 4] float64).

    mmdetection v1 gives a box [x1, y1, x2, y2] whole pixels x1..x2 (a width of x2 - x1 + 1) in its IoU and its box
    deltas. Such an IoU and such deltas equal the usual ones computed on [x1, y1, x2 + 1, y2 + 1] (the overlap, the
    areas and the widths all gain the same pixel, the centres shift alike), so its anchors are returned with that
    pixel added and the rest of the detection core stays as it is. The arithmetic before rounding is float32's, as
    mmdetection's, so that halves round the same way.
    """
    levels = []
    for level, (fmap, step) in enumerate(zip(layout.feature_maps, layout.steps)):
        small = torch.tensor(layout.min_sizes[level], dtype=torch.float32)
        widths, heights = [small], [small]
        if layout.max_sizes[level]:
            scale = torch.tensor(math.sqrt(layout.max_sizes[level] / layout.min_sizes[level]), dtype=torch.float32)
            widths.append(small * scale)
            heights.append(small * scale)
        for ratio in layout.aspect_ratios[level]:
            for r in (1 / ratio, ratio):  # the wide box (height ratio 1/r), then the tall one
                height_ratio = torch.tensor(r, dtype=torch.float32).sqrt()
                widths.append(small * (1 / height_ratio))
                heights.append(small * height_ratio)
        w, h = torch.stack(widths), torch.stack(heights)
        centre = torch.tensor((step - 1) / 2, dtype=torch.float32)
        cell = torch.stack(
            [centre - 0.5 * (w - 1), centre - 0.5 * (h - 1), centre + 0.5 * (w - 1), centre + 0.5 * (h - 1)]
        )
        cell = cell.T.round().double() + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
        shifts = torch.arange(fmap, dtype=torch.float64) * step
        sy, sx = torch.meshgrid(shifts, shifts, indexing="ij")  # row-major: y outer, x inner
        offsets = torch.stack([sx, sy, sx, sy], dim=-1).reshape(-1, 1, 4)
        levels.append((offsets + cell[None]).reshape(-1, 4))
    return torch.cat(levels)


# mmdetection v1's inclusive right/bottom pixel, added to a box to give it the usual exclusive edges
_INCLUSIVE_EDGE = (0.0, 0.0, 1.0, 1.0)


def priors_for_loss(layout: PriorLayout) -> torch.Tensor:
    """The priors the loss matches and encodes against ([A, 4] float32, the order of :func:`generate_priors`).

    "ssd": the normalized priors. "mmdet_v1": the anchors in pixels, where mmdetection computes its IoU. An object
    often overlaps two anchors exactly equally; in pixels they tie there as they tie in mmdetection, and its first
    anchor wins, while normalized arithmetic breaks the tie by rounding noise (and so changes M). Matching and the
    box encoding do not depend on the unit otherwise.
    """
    if layout.generator == "mmdet_v1":
        return _mmdet_v1_anchors(layout).float()
    return generate_priors(layout)


def targets_for_loss(layout: PriorLayout, targets: list[dict]) -> list[dict]:
    """Ground truths in the frame of :func:`priors_for_loss`. With "mmdet_v1", the data's normalized boxes are
    mmdetection v1's inclusive pixel boxes (x2 is the last pixel covered): in pixels, with that pixel added."""
    if layout.generator != "mmdet_v1":
        return targets
    scale, edge = float(layout.image_size), torch.tensor(_INCLUSIVE_EDGE, dtype=torch.float64)
    # in float64: pixel coordinates divided by the input size in float64 (the loader's) come back to the very
    # float32 they were
    return [
        {**target, "boxes": (target["boxes"].double() * scale + edge.to(target["boxes"].device)).float()}
        for target in targets
    ]


def detections_from_priors_frame(layout: PriorLayout, boxes: torch.Tensor) -> torch.Tensor:
    """Decoded normalized boxes in the data's convention: "mmdet_v1" decodes boxes with exclusive edges (clipped and
    suppressed so, as mmdetection's +1 arithmetic does) and reports them inclusive."""
    if layout.generator != "mmdet_v1":
        return boxes
    return boxes - torch.tensor(_INCLUSIVE_EDGE).to(boxes) / layout.image_size


__all__ = ["PriorLayout", "detections_from_priors_frame", "generate_priors", "priors_for_loss", "targets_for_loss"]
