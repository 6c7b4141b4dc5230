"""Recall by object size at several confidence thresholds (the paper's Tables 3, 4 and 6-9)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from ..conventions import RECALL_THRESHOLDS, SIZE_BUCKETS
from ..data.check import size_bucket
from ..data.records import DetectionSet
from .voc_eval import iou_one_to_many


def size_recall(
    data: DetectionSet,
    detections: list[dict],
    thresholds: tuple[float, ...] = RECALL_THRESHOLDS,
    iou_threshold: float = 0.5,
    plus_one: bool | None = None,
) -> pd.DataFrame:
    """For each threshold and size bucket: objects recalled / objects, and the percentage.

    A counted object (not difficult, not crowd) is recalled when a detection of its class scoring >= the threshold
    overlaps it with IoU >= ``iou_threshold`` (no one-to-one assignment). Detections are those of SSD's standard
    post-processing at 0.01 (NMS 0.45, top 200); filtering them by a higher threshold equals post-processing at it.
    Buckets: :mod:`scbloss.conventions`' sizes, by area in original pixels; ``plus_one`` (default: on for VOC)
    measures areas and IoU with VOC's inclusive-pixel convention, otherwise w*h.
    """
    plus_one = data.kind == "voc" if plus_one is None else plus_one
    by_image = defaultdict(list)
    for det in detections:
        by_image[det["image_id"]].append(det)
    # per object: the best score among same-class detections overlapping it enough; thresholds then just compare
    category_of = data.category_ids or list(range(1, data.num_classes + 1))
    rows = []
    for record in data.records:
        counted = record.counted()
        if not counted.any():
            continue
        dets = by_image.get(record.image_id, [])
        labels = np.array([d["category_id"] for d in dets])
        scores = np.array([d["score"] for d in dets])
        boxes = np.array(
            [[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]] for d in dets]
        ).reshape(-1, 4)
        buckets = size_bucket(record.boxes, plus_one)
        for box, label, bucket in zip(record.boxes[counted], record.labels[counted], buckets[counted]):
            same = labels == category_of[label - 1]
            best_score = 0.0
            if same.any():
                overlaps = iou_one_to_many(box, boxes[same], plus_one)
                hits = overlaps >= iou_threshold
                best_score = float(scores[same][hits].max()) if hits.any() else 0.0
            rows.append((bucket, best_score))
    objects = pd.DataFrame(rows, columns=["bucket", "best_score"])
    table = []
    for threshold in thresholds:
        for bucket in SIZE_BUCKETS:
            subset = objects[objects["bucket"] == bucket]
            hits, total = int((subset["best_score"] >= threshold).sum()), len(subset)
            table.append(
                {
                    "threshold": threshold,
                    "bucket": bucket,
                    "hits": hits,
                    "total": total,
                    "recall": round(100.0 * hits / total, 2) if total else float("nan"),
                }
            )
    return pd.DataFrame(table)


def format_recall(hits: int, total: int) -> str:
    """As the paper prints it: '73.06 (377/516)'."""
    return f"{100.0 * hits / total:.2f} ({hits}/{total})" if total else "n/a (0/0)"


__all__ = ["format_recall", "size_recall"]
