"""PASCAL VOC average precision (the VOC2007 11-point protocol the SSD family reports, or all-point)."""

from __future__ import annotations

import numpy as np

from ..data.records import DetectionSet


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """IoU of one xyxy box with [N, 4] boxes; ``plus_one`` counts inclusive pixels as VOC's devkit does."""
    extra = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + extra, 0.0)
    ih = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + extra, 0.0)
    inter = iw * ih
    area = lambda b: (b[..., 2] - b[..., 0] + extra) * (b[..., 3] - b[..., 1] + extra)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = True) -> float:
    """VOC07: mean of the best precision at recall >= 0, 0.1, ..., 1. All-point: area under the monotone curve."""
    if eleven_point:
        return float(
            np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.arange(0.0, 1.1, 0.1)])
        )  # the devkit's thresholds, float steps included
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    changed = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[changed + 1] - r[changed]) * p[changed + 1]))


def voc_ap_per_class(
    data: DetectionSet, detections: list[dict], iou_threshold: float = 0.5, eleven_point: bool = True
) -> dict[str, float]:
    """AP per class name. ``detections`` are COCO result entries (bbox xywh in pixels, category_id = label).

    A detection is a true positive when its best-overlapping ground truth of its class (IoU > threshold, +1 pixel
    convention) is not difficult and not yet taken; a detection whose best match is difficult counts as nothing;
    the rest (duplicates included) are false positives. Difficult objects are not counted in recall.
    """
    records = {r.image_id: r for r in data.records}
    aps = {}
    for label, name in enumerate(data.class_names, start=1):
        gts = {i: (r.boxes[r.labels == label], r.difficult[r.labels == label]) for i, r in records.items()}
        num_positives = int(sum((~difficult).sum() for _, difficult in gts.values()))
        own = [d for d in detections if d["category_id"] == label]
        scores = np.array([d["score"] for d in own])
        order = np.argsort(-scores, kind="stable")
        taken = {i: np.zeros(len(b), dtype=bool) for i, (b, _) in gts.items()}
        tp, fp = np.zeros(len(own)), np.zeros(len(own))
        for rank, index in enumerate(order):
            det = own[index]
            x, y, w, h = det["bbox"]
            box = np.array([x, y, x + w, y + h])
            boxes, difficult = gts.get(det["image_id"], (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
            if len(boxes) == 0:
                fp[rank] = 1
                continue
            overlaps = iou_one_to_many(box, boxes)
            best = int(np.argmax(overlaps))
            if overlaps[best] > iou_threshold:
                if difficult[best]:
                    continue
                if not taken[det["image_id"]][best]:
                    tp[rank] = 1
                    taken[det["image_id"]][best] = True
                else:
                    fp[rank] = 1
            else:
                fp[rank] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / max(num_positives, 1)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[name] = average_precision(recall, precision, eleven_point) if num_positives else float("nan")
    return aps


__all__ = ["average_precision", "iou_one_to_many", "voc_ap_per_class"]
