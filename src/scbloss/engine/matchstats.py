"""How many priors each object matches (the paper's Figs. 1 and 3), overall and by object size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..atomic import save_figure
from ..conventions import SIZE_BUCKETS, size_bucket_of_area
from ..data.loader import DetectionDataset
from ..data.records import DetectionSet
from ..data.transforms import train_transform
from ..detection import PriorLayout, generate_priors
from ..detection.iou import PriorIntervals
from ..detection.matcher import match_concat, matching_counts


def _normalized_objects(data: DetectionSet, augment: bool, size: int, seed: int):
    """Per image, the normalized xyxy boxes of its counted objects, at the model input (optionally augmented)."""
    if augment:
        dataset = DetectionDataset(data, train_transform(size), train=True, seed=seed)
        for index in range(len(dataset)):
            yield dataset[index][1]["boxes"]
        return
    for record in data.records:
        boxes = torch.from_numpy(record.boxes[record.counted()]).reshape(-1, 4)
        yield boxes / torch.tensor([record.width, record.height, record.width, record.height], dtype=torch.float32)


def matching_statistics(
    data: DetectionSet,
    layout: PriorLayout,
    augment: bool = False,
    seed: int = 0,
    chunk: int = 256,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per object: its size bucket at the model input (area in input pixels) and its number of matches M."""
    intervals = PriorIntervals(generate_priors(layout))
    rows = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if not batch:
            return
        boxes = torch.cat(batch)
        image_of = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([len(b) for b in batch]))
        counts = matching_counts(match_concat(boxes, image_of, len(batch), intervals), len(boxes))
        side = layout.image_size
        area = (boxes[:, 2] - boxes[:, 0]) * side * (boxes[:, 3] - boxes[:, 1]) * side
        bucket = size_bucket_of_area(area.numpy())
        rows.extend(zip(bucket.tolist(), counts.tolist()))
        batch.clear()

    images = tqdm(
        _normalized_objects(data, augment, layout.image_size, seed),
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


__all__ = ["matching_statistics", "plot_histograms"]
