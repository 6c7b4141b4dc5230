"""`scbloss data check`: read a dataset folder whole and report counts and problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .records import DatasetError, DetectionSet

SMALL, MEDIUM = 32**2, 96**2


def size_bucket(boxes: np.ndarray, plus_one: bool) -> np.ndarray:
    """'small' (area <= 32^2), 'medium' (<= 96^2) or 'large' per box; ``plus_one`` counts VOC's inclusive pixels."""
    extra = 1.0 if plus_one else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)
    return np.where(area <= SMALL, "small", np.where(area <= MEDIUM, "medium", "large"))


def summarize(data: DetectionSet) -> pd.DataFrame:
    """Objects per class and size bucket (counted ones only), with difficult/crowd and image totals."""
    rows = []
    for record in data.records:
        buckets = size_bucket(record.boxes, plus_one=data.kind == "voc")
        for label, bucket, counted in zip(record.labels, buckets, record.counted()):
            rows.append({"class": data.class_names[label - 1], "bucket": bucket, "counted": bool(counted)})
    frame = pd.DataFrame(rows, columns=["class", "bucket", "counted"])
    table = (
        frame[frame["counted"]]
        .pivot_table(index="class", columns="bucket", aggfunc="size", fill_value=0)
        .reindex(index=data.class_names, columns=["small", "medium", "large"], fill_value=0)
    )
    table["ignored"] = frame[~frame["counted"]].groupby("class").size().reindex(data.class_names, fill_value=0)
    table.loc["total"] = table.sum()
    return table.astype(int)


def check_folder(folder: Path) -> tuple[list[tuple[str, DetectionSet]], list[str]]:
    """Find every dataset split under ``folder`` (toy, VOCdevkit or COCO layouts) and read it; collect problems."""
    from .registry import load_dataset

    folder = Path(folder)
    candidates = []
    if (folder / "toy.json").is_file():
        candidates += [("toy_voc", folder, s) for s in ("trainval", "test")]
        candidates += [("toy_coco", folder, s) for s in ("train", "val")]
    else:
        if (folder / "VOC2007").is_dir() or (folder / "VOC2012").is_dir():
            candidates += [("voc", folder, s) for s in ("trainval", "test")]
        if (folder / "annotations").is_dir():
            candidates += [("coco", folder, s) for s in ("train", "val")]
    if not candidates:
        return [], [f"{folder}: no toy, VOCdevkit or COCO layout found"]
    found, problems = [], []
    for kind, root, split in candidates:
        try:
            data = load_dataset(kind, root, split)
        except (DatasetError, FileNotFoundError) as error:
            problems.append(f"{kind}/{split}: {error}")
            continue
        if data.dropped:
            problems.append(f"{kind}/{split}: {data.dropped} degenerate box(es) dropped after clipping")
        found.append((f"{kind}/{split}", data))
    return found, problems


__all__ = ["check_folder", "size_bucket", "summarize"]
