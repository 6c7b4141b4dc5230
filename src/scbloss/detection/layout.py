"""Where a detector's prior (default) boxes sit and what shapes they take: plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriorLayout:
    """Where priors sit and what shapes they take, per feature map.

    ``clip`` follows torchvision's ``DefaultBoxGenerator``: only each prior's width and height are clamped to
    [0, 1]; centres are left where the grid puts them, even when that is just outside the image (e.g. the last
    column of the 10x10 map of SSD300 lies at cx = 9.5 * 32 / 300 = 1.013). ssd.pytorch clamps the whole
    (cx, cy, w, h) tuple instead, which moves 114 of SSD300's 8732 priors; choose that with ``clip="cxcywh"``.

    ``generator`` says how the same sizes become boxes: "ssd" as above (Caffe SSD, torchvision), or "mmdet_v1" as
    mmdetection v1.0's SSDHead builds its anchors, which the paper's released code trains with: pixel boxes
    rounded to whole pixels, centred at (step - 1) / 2 + i * step, never clipped, with inclusive pixel edges
    (see :func:`scbloss.detection.priors.generate_priors`).
    """

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]  # 0 for a level without the large square
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: str = "wh"  # "wh" (torchvision), "cxcywh" (ssd.pytorch) or "none" (Caffe VOC recipe)
    generator: str = "ssd"  # "ssd" or "mmdet_v1"

    def __post_init__(self) -> None:
        per_level = (self.feature_maps, self.steps, self.min_sizes, self.max_sizes, self.aspect_ratios)
        if len({len(values) for values in per_level}) != 1:
            raise ValueError(
                "PriorLayout: feature_maps, steps, min_sizes, max_sizes and aspect_ratios must have one entry "
                f"per level, got lengths {[len(values) for values in per_level]}"
            )
        if self.clip not in ("wh", "cxcywh", "none"):
            raise ValueError(f"PriorLayout: clip must be 'wh', 'cxcywh' or 'none', got {self.clip!r}")
        if self.generator not in ("ssd", "mmdet_v1"):
            raise ValueError(f"PriorLayout: generator must be 'ssd' or 'mmdet_v1', got {self.generator!r}")
        if self.generator == "mmdet_v1" and self.clip != "none":
            raise ValueError("PriorLayout: mmdetection v1's anchors are never clipped; give clip='none'")

    def priors_per_location(self) -> list[int]:
        """Priors at each cell of each level: one or two squares (two when a max size is set), two per aspect ratio."""
        return [(2 if large else 1) + 2 * len(ratios) for large, ratios in zip(self.max_sizes, self.aspect_ratios)]

    def num_priors(self) -> int:
        return sum(f * f * n for f, n in zip(self.feature_maps, self.priors_per_location()))


def sizes(values) -> tuple[float, ...]:
    """A tuple of floats (prior sizes and steps are written as integers in the recipes)."""
    return tuple(float(v) for v in values)


def scale_fractions(image_size: int, scales) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """min/max sizes in pixels from consecutive scale fractions (s_k, s_k+1), as torchvision's SSD scales."""
    pixels = [round(image_size * scale, 2) for scale in scales]
    return tuple(pixels[:-1]), tuple(pixels[1:])


def uniform_steps(image_size: int, maps) -> tuple[float, ...]:
    """One cell per input/map pixels on every level (the step of a map that tiles the input exactly)."""
    return tuple(image_size / f for f in maps)


__all__ = ["PriorLayout", "scale_fractions", "sizes", "uniform_steps"]
