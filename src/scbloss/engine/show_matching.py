"""The priors each object of a few images matches, as the loss matches them, with its M and W(M): the paper's
Fig. 2 on real data, as a figure (one panel per image) and a CSV (one row per object)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import save_figure, write_text
from ..conventions import size_bucket_of_area
from ..data.records import DatasetError, DetectionSet, undecodable
from ..detection import PriorLayout
from ..detection.iou import PriorIntervals
from ..detection.matcher import matching_counts
from ..detection.priors import priors_for_loss
from ..detection.weighting import object_weights
from .matchstats import input_pixels_per_unit, match_images, record_in_loss_frame

log = logging.getLogger(__name__)

# Images chosen by what they hold (ties: the first in the split), besides a name or a position in the split.
PICKS = ("smallest-object", "largest-object", "most-objects")
COLUMNS = ["image", "object", "class", "x1", "y1", "x2", "y2", "bucket", "matches", "weight"]


def image_index(data: DetectionSet, key: str, layout: PriorLayout) -> int:
    """The position in ``data.records`` of the image ``key`` names: a record's name (or its file stem), else a
    position in the split (0-based), else one of :data:`PICKS`, the sizes measured at the model input."""
    for index, record in enumerate(data.records):
        if key in (record.name, Path(record.name).stem):
            return index
    if key.isdigit():
        if int(key) < len(data.records):
            return int(key)
        raise ValueError(f"image position {key} is past the split's {len(data.records)} images")
    if key not in PICKS:
        raise ValueError(f"no image named {key!r}; give a name, a position in the split or one of {', '.join(PICKS)}")
    pixels = input_pixels_per_unit(layout)
    areas = {}  # image -> its objects' areas at the model input, for the images that hold any
    for index, record in enumerate(data.records):
        boxes = record_in_loss_frame(record, data.kind, layout).double() * pixels
        if len(boxes):
            areas[index] = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).numpy()
    if not areas:
        raise ValueError(f"no image of the split holds a counted object to pick {key!r} by")
    if key == "most-objects":
        return max(areas, key=lambda index: len(areas[index]))
    if key == "smallest-object":
        return min(areas, key=lambda index: areas[index].min())
    return max(areas, key=lambda index: areas[index].max())


def show_matching(
    data: DetectionSet,
    indices: list[int],
    layout: PriorLayout,
    weighting: str = "scb",
    alpha: float = 1.0,
    beta: float = 3.0,
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Match the counted objects of the images at ``indices`` as the loss does (``layout`` as the recipe makes it).

    Returns one row per object (columns :data:`COLUMNS`: its image, its index among the record's objects, class,
    box in input pixels of the loss's frame, size bucket, M and W(M)), and, per row, its matched priors [M, 4] in
    the same pixels. An object no prior overlaps by the threshold holds the prior the matcher forces onto it.
    """
    priors = priors_for_loss(layout)
    pixels = input_pixels_per_unit(layout)
    records = [data.records[index] for index in indices]
    per_image = [record_in_loss_frame(record, data.kind, layout) for record in records]
    if not any(len(boxes) for boxes in per_image):
        return pd.DataFrame(columns=COLUMNS), []
    boxes, matched = match_images(per_image, PriorIntervals(priors))
    counts = matching_counts(matched, len(boxes))
    weights = object_weights(counts, weighting, alpha, beta)
    owner = matched.view(-1)
    prior_of_slot = torch.arange(owner.numel()) % priors.shape[0]
    matched_priors = [(priors[prior_of_slot[owner == row]] * pixels).numpy() for row in range(len(boxes))]
    in_pixels = (boxes.double() * pixels).numpy()
    area = (in_pixels[:, 2] - in_pixels[:, 0]) * (in_pixels[:, 3] - in_pixels[:, 1])
    rows = []
    for index, record in zip(indices, records):
        counted = np.flatnonzero(record.counted())
        for obj in counted:
            row = len(rows)
            rows.append(
                {
                    "image": record.name or str(index),
                    "object": int(obj),
                    "class": data.class_names[int(record.labels[obj]) - 1],
                    **dict(zip(["x1", "y1", "x2", "y2"], np.round(in_pixels[row], 2).tolist())),
                    "bucket": str(size_bucket_of_area(area[row])),
                    "matches": int(counts[row]),
                    "weight": round(float(weights[row]), 4),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS), matched_priors


def _resized_image(record, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(record.file) as handle:
            return np.asarray(handle.convert("RGB").resize((size, size), Image.BILINEAR))
    except OSError as error:
        raise DatasetError(undecodable(record.file, error)) from error


def plot_matching(
    data: DetectionSet,
    indices: list[int],
    table: pd.DataFrame,
    matched_priors: list[np.ndarray],
    layout: PriorLayout,
    png: Path,
    title: str,
) -> None:
    """One panel per image, resized to the model input: each object's box in a colour of its own, the priors it
    matched faint in that colour, and its "M = ..., W(M) = ..." label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    def rectangle(x1, y1, x2, y2):
        return Rectangle((x1, y1), x2 - x1, y2 - y1)

    size = layout.image_size
    colours = plt.get_cmap("tab10").colors
    figure, axes = plt.subplots(1, len(indices), figsize=(5.2 * len(indices), 5.6), squeeze=False)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.04)
    rows = iter(range(len(table)))
    for axis, index in zip(axes[0], indices):
        record = data.records[index]
        axis.imshow(_resized_image(record, size), extent=(0, size, size, 0))
        objects = int(record.counted().sum())
        priors, prior_colours, boxes, box_colours = [], [], [], []
        for colour_index in range(objects):
            row = next(rows)
            colour = colours[colour_index % len(colours)]
            priors += [rectangle(*prior) for prior in matched_priors[row]]
            prior_colours += [(*colour, 0.45)] * len(matched_priors[row])
            x1, y1, x2, y2 = table.loc[row, ["x1", "y1", "x2", "y2"]]
            boxes.append(rectangle(x1, y1, x2, y2))
            box_colours.append(colour)
            near_top = y1 < 0.05 * size  # no room above the box: the label goes inside it
            near_right = x1 > 0.7 * size  # no room on the right: the label ends at the box's right edge
            axis.text(
                x2 if near_right else x1,
                y1 + 2 if near_top else y1 - 2,
                f"M = {table.loc[row, 'matches']}, W(M) = {table.loc[row, 'weight']:.2f}",
                ha="right" if near_right else "left",
                va="top" if near_top else "bottom",
                fontsize=8,
                color="white",
                bbox={"facecolor": colour, "alpha": 0.85, "pad": 1.5, "edgecolor": "none"},
                clip_on=True,
            )
        # one collection per kind: adding patches one by one costs seconds on COCO's crowded images
        axis.add_collection(PatchCollection(priors, facecolor="none", edgecolor=prior_colours, linewidth=0.8))
        axis.add_collection(PatchCollection(boxes, facecolor="none", edgecolor=box_colours, linewidth=2.2))
        axis.set_xlim(0, size)
        axis.set_ylim(size, 0)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"{record.name or index}: {objects} objects", fontsize=10)
    figure.suptitle(title)
    save_figure(figure, png)


def write_matching(
    data: DetectionSet,
    keys: list[str],
    layout: PriorLayout,
    prefix: Path,
    title: str,
    weighting: str = "scb",
    alpha: float = 1.0,
    beta: float = 3.0,
) -> pd.DataFrame:
    """The images ``keys`` name (see :func:`image_index`; an image named twice is drawn once) -> PREFIX.png and
    PREFIX.csv; returns the table."""
    indices = list(dict.fromkeys(image_index(data, key, layout) for key in keys))
    log.info("images %s: %s", ", ".join(keys), ", ".join(data.records[i].name or str(i) for i in indices))
    table, matched_priors = show_matching(data, indices, layout, weighting, alpha, beta)
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_text(prefix.with_name(prefix.name + ".csv"), table.to_csv(index=False))
    plot_matching(data, indices, table, matched_priors, layout, prefix.with_name(prefix.name + ".png"), title)
    return table


__all__ = ["COLUMNS", "PICKS", "image_index", "plot_matching", "show_matching", "write_matching"]
