"""SSD prior (default) boxes generated from a layout description."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torchvision.ops import box_convert


@dataclass(frozen=True)
class PriorLayout:
    """Where priors sit and what shapes they take, per feature map.

    ``clip`` follows torchvision's ``DefaultBoxGenerator``: only each prior's width and height are clamped to
    [0, 1]; centres are left where the grid puts them, even when that is just outside the image (e.g. the last
    column of the 10x10 map of SSD300 lies at cx = 9.5 * 32 / 300 = 1.013). ssd.pytorch clamps the whole
    (cx, cy, w, h) tuple instead, which moves 114 of SSD300's 8732 priors; choose that with ``clip="cxcywh"``.
    """

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]  # 0 for a level without the large square
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: str = "wh"  # "wh" (torchvision), "cxcywh" (ssd.pytorch) or "none" (Caffe VOC recipe)

    def __post_init__(self) -> None:
        per_level = (self.feature_maps, self.steps, self.min_sizes, self.max_sizes, self.aspect_ratios)
        if len({len(values) for values in per_level}) != 1:
            raise ValueError(
                "PriorLayout: feature_maps, steps, min_sizes, max_sizes and aspect_ratios must have one entry "
                f"per level, got lengths {[len(values) for values in per_level]}"
            )
        if self.clip not in ("wh", "cxcywh", "none"):
            raise ValueError(f"PriorLayout: clip must be 'wh', 'cxcywh' or 'none', got {self.clip!r}")

    def priors_per_location(self) -> list[int]:
        """Priors at each cell of each level: one or two squares (two when a max size is set), two per aspect ratio."""
        return [(2 if large else 1) + 2 * len(ratios) for large, ratios in zip(self.max_sizes, self.aspect_ratios)]

    def num_priors(self) -> int:
        return sum(f * f * n for f, n in zip(self.feature_maps, self.priors_per_location()))


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


def _sizes(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


SSD300_MAPS = (38, 19, 10, 5, 3, 1)
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD300_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD512_MAPS = (64, 32, 16, 8, 4, 2, 1)
SSD512_STEPS = (8, 16, 32, 64, 128, 256, 512)
SSD512_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))

# The sizes of the SSD papers' Caffe recipes (ssd_pascal.py / ssd_coco.py), as ssd.pytorch's config.py lists them.
SSD_LAYOUTS: dict[tuple[str, str], PriorLayout] = {
    ("ssd300", "voc"): PriorLayout(
        300, SSD300_MAPS, _sizes(SSD300_STEPS), _sizes((30, 60, 111, 162, 213, 264)),
        _sizes((60, 111, 162, 213, 264, 315)), SSD300_RATIOS,
    ),
    ("ssd300", "coco"): PriorLayout(
        300, SSD300_MAPS, _sizes(SSD300_STEPS), _sizes((21, 45, 99, 153, 207, 261)),
        _sizes((45, 99, 153, 207, 261, 315)), SSD300_RATIOS,
    ),
    ("ssd512", "voc"): PriorLayout(
        512, SSD512_MAPS, _sizes(SSD512_STEPS), _sizes((35, 76, 153, 230, 307, 384, 460)),
        _sizes((76, 153, 230, 307, 384, 460, 537)), SSD512_RATIOS,
    ),
    ("ssd512", "coco"): PriorLayout(
        512, SSD512_MAPS, _sizes(SSD512_STEPS), _sizes((20, 51, 133, 215, 296, 378, 460)),
        _sizes((51, 133, 215, 296, 378, 460, 542)), SSD512_RATIOS,
    ),
}


def _fractions(image_size: int, scales: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """min/max sizes in pixels from consecutive scale fractions (s_k, s_k+1), as torchvision's SSD scales."""
    pixels = [round(image_size * scale, 2) for scale in scales]
    return tuple(pixels[:-1]), tuple(pixels[1:])


def _uniform_steps(image_size: int, maps: Sequence[int]) -> tuple[float, ...]:
    return tuple(image_size / f for f in maps)


# FSSD (Li and Zhou 2017): SSD's sizes, with ratios 2 and 3 on the first level too (11620 / 32756 priors).
for (_model, _dataset), _base in list(SSD_LAYOUTS.items()):
    _fssd = "fssd300" if _model == "ssd300" else "fssd512"
    _ratios = ((2, 3),) * (len(_base.feature_maps) - 2) + ((2,),) * 2
    SSD_LAYOUTS[(_fssd, _dataset)] = PriorLayout(
        _base.image_size, _base.feature_maps, _base.steps, _base.min_sizes, _base.max_sizes, _ratios
    )

# DSSD (Fu et al. 2017), COCO. Feature-map sizes are what torchvision's ResNet-101 (conv5 dilated, stride 16) and
# the SSD-style extra layers give at 321 / 513 px; the DSSD paper's Caffe ResNet pads differently and lists
# 40, 20, 10, 5, 3, 1 for DSSD321. Aspect ratios 1.6, 2 and 3 on every level (DSSD, Sec. 3.2); scales follow
# SSD300 / SSD512 on COCO (torchvision's 0.07 ... 1.05 and ssd.pytorch's 0.04 ... 1.06 fractions of the input).
_DSSD321_MAPS = (41, 21, 11, 6, 3, 1)
_DSSD513_MAPS = (65, 33, 17, 9, 5, 3, 1)
SSD_LAYOUTS[("dssd321", "coco")] = PriorLayout(
    321, _DSSD321_MAPS, _uniform_steps(321, _DSSD321_MAPS),
    *_fractions(321, (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)), ((1.6, 2, 3),) * 6,
)
SSD_LAYOUTS[("dssd513", "coco")] = PriorLayout(
    513, _DSSD513_MAPS, _uniform_steps(513, _DSSD513_MAPS),
    *_fractions(513, (0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06)), ((1.6, 2, 3),) * 7,
)

# RefineDet320 (Zhang et al. 2018): one anchor size per level (32, 64, 128, 256) with ratios 1, 2, 1/2 -> 6375.
for _dataset in ("voc", "coco"):
    SSD_LAYOUTS[("refinedet320", _dataset)] = PriorLayout(
        320, (40, 20, 10, 5), (8.0, 16.0, 32.0, 64.0), (32.0, 64.0, 128.0, 256.0), (0.0, 0.0, 0.0, 0.0),
        ((2,),) * 4,
    )


def ssd_layout(model: str, dataset: str) -> PriorLayout:
    """The prior layout of a detector for a dataset family ('voc' or 'coco')."""
    try:
        return SSD_LAYOUTS[(model, dataset)]
    except KeyError:
        known = ", ".join(f"{m}/{d}" for m, d in SSD_LAYOUTS)
        raise ValueError(f"no prior layout for model {model!r} on dataset {dataset!r}; known: {known}") from None


__all__ = ["PriorLayout", "generate_priors", "ssd_layout", "SSD_LAYOUTS"]
