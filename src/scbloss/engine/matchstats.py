"""How many priors each object matches (the paper's Figs. 1 and 3), overall and by object size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..atomic import save_figure
from ..conventions import SIZE_BUCKETS, size_bucket_of_area
from ..data.loader import DetectionDataset, training_transform
from ..data.records import DetectionSet, ImageRecord, to_mmdet_v1
from ..data.transforms import normalization
from ..detection import PriorLayout
from ..detection.iou import PriorIntervals
from ..detection.matcher import match_concat, matching_counts
from ..detection.priors import priors_for_loss, targets_for_loss
from ..recipes import recipe


def record_in_loss_frame(record: ImageRecord, annotation_format: str, layout: PriorLayout) -> torch.Tensor:
    """One image's counted objects resized to the model input, in the frame the loss matches in ([N, 4] xyxy)."""
    size = layout.image_size
    boxes = record.boxes[record.counted()].reshape(-1, 4)
    if layout.generator == "mmdet_v1":  # resized as mmdetection does: its corners scaled, clipped to size - 1
        scale = np.array([record.width, record.height] * 2, dtype=np.float64)
        normalized = np.clip(to_mmdet_v1(boxes.astype(np.float64), annotation_format) / scale, 0, (size - 1) / size)
    else:
        normalized = boxes / np.array([record.width, record.height] * 2, dtype=np.float32)
    return targets_for_loss(layout, [{"boxes": torch.from_numpy(normalized)}])[0]["boxes"]


def input_pixels_per_unit(layout: PriorLayout) -> float:
    """Input pixels per unit of the loss frame: normalized for SSD's priors, already pixels for mmdetection's."""
    return 1.0 if layout.generator == "mmdet_v1" else float(layout.image_size)


def match_images(boxes_per_image: list[torch.Tensor], intervals: PriorIntervals) -> tuple[torch.Tensor, torch.Tensor]:
    """Match each image's objects (loss frame) to the priors as the loss does -> (their boxes one image after
    another [S, 4], and per image and prior the row of its object in them or -1 [B, A])."""
    boxes = torch.cat(boxes_per_image)
    image_of = torch.repeat_interleave(
        torch.arange(len(boxes_per_image)), torch.tensor([len(b) for b in boxes_per_image])
    )
    return boxes, match_concat(boxes, image_of, len(boxes_per_image), intervals)


def _objects_in_loss_frame(
    data: DetectionSet, layout: PriorLayout, augment: bool, seed: int, recipe_name: str, augmentation: str | None
):
    """Per image, its counted objects at the model input, in the frame the loss matches in (normalized for SSD's
    priors; mmdetection v1's pixels for the authors' anchors), optionally through the recipe's augmentation."""
    size = layout.image_size
    if augment:
        settings = recipe(recipe_name)
        augmentation = augmentation or settings.augmentation
        transform = training_transform(augmentation, size, normalization(settings.normalization))
        dataset = DetectionDataset(data, transform, train=True, seed=seed, augmentation=augmentation)
        for index in range(len(dataset)):
            yield targets_for_loss(layout, [dataset[index][1]])[0]["boxes"]
        return
    for record in data.records:
        yield record_in_loss_frame(record, data.kind, layout)


def matching_statistics(
    data: DetectionSet,
    layout: PriorLayout,
    augment: bool = False,
    seed: int = 0,
    chunk: int = 256,
    progress: bool = False,
    recipe_name: str = "original",
    augmentation: str | None = None,
) -> pd.DataFrame:
    """One row per object: its size bucket at the model input (area in input pixels) and its number of matches M,
    matched as the loss matches (``layout`` as the recipe makes it: :meth:`scbloss.recipes.Recipe.layout`).
    ``augment`` draws through ``augmentation`` (the model's, :func:`scbloss.recipes.training_augmentation`; None:
    the recipe's own)."""
    priors = priors_for_loss(layout)
    intervals = PriorIntervals(priors)
    pixels = input_pixels_per_unit(layout)
    rows = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if not batch:
            return
        boxes, matched = match_images(batch, intervals)
        counts = matching_counts(matched, len(boxes))
        area = (boxes[:, 2] - boxes[:, 0]) * pixels * (boxes[:, 3] - boxes[:, 1]) * pixels
        bucket = size_bucket_of_area(area.numpy())
        rows.extend(zip(bucket.tolist(), counts.tolist()))
        batch.clear()

    images = tqdm(
        _objects_in_loss_frame(data, layout, augment, seed, recipe_name, augmentation),
        total=len(data.records),
        desc="match",
        disable=not progress,
        mininterval=10,
    )  # a rule's log shows progress on COCO train
    for boxes in images:
        batch.append(boxes)
        if len(batch) == chunk:
            flush()
    flush()
    return pd.DataFrame(rows, columns=["bucket", "matches"])


def plot_histograms(stats: pd.DataFrame, png: Path, title: str, clip: int = 30) -> None:
    """Bars of objects per match count (counts above ``clip`` pooled), overall and per size bucket."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clipped = stats["matches"].clip(upper=clip)
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharex=True)
    for axis, bucket in zip(axes, ["all", *SIZE_BUCKETS]):
        values = clipped if bucket == "all" else clipped[stats["bucket"] == bucket]
        counts = np.bincount(values.to_numpy(dtype=int), minlength=clip + 1)
        axis.bar(np.arange(clip + 1), counts, color="#4477aa")
        axis.set_title(f"{bucket} ({len(values)} objects)")
        axis.set_xlabel(f"matched priors (>= {clip} pooled)")
    axes[0].set_ylabel("objects")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, png)


__all__ = [
    "input_pixels_per_unit",
    "match_images",
    "matching_statistics",
    "plot_histograms",
    "record_in_loss_frame",
]
