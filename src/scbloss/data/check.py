"""`scbloss data check`: read a dataset folder whole, decode every image, report counts and every problem."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..conventions import SIZE_BUCKETS, size_bucket_of_area
from .records import DatasetError, DetectionSet, size_mismatch, undecodable
from .transforms import too_small_to_train


def size_bucket(boxes: np.ndarray, plus_one: bool) -> np.ndarray:
    """The size bucket (scbloss.conventions) of each box; ``plus_one`` counts VOC's inclusive pixels."""
    extra = 1.0 if plus_one else 0.0
    return size_bucket_of_area((boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra))


def summarize(data: DetectionSet) -> pd.DataFrame:
    """Objects per class and size bucket (counted ones only), with difficult/crowd and image totals."""
    rows = []
    for record in data.records:
        buckets = size_bucket(record.boxes, plus_one=data.kind == "voc")
        for label, bucket, counted in zip(record.labels, buckets, record.counted()):
            rows.append({"class": data.class_names[label - 1], "bucket": bucket, "counted": bool(counted)})
    frame = pd.DataFrame(rows, columns=["class", "bucket", "counted"])
    if not frame["counted"].any():  # no counted object (every annotation skipped): a table of zeros
        table = pd.DataFrame(0, index=data.class_names, columns=[*SIZE_BUCKETS, "ignored"])
        table.loc["total"] = 0
        return table
    table = (
        frame[frame["counted"]]
        .pivot_table(index="class", columns="bucket", aggfunc="size", fill_value=0)
        .reindex(index=data.class_names, columns=SIZE_BUCKETS, fill_value=0)
    )
    table["ignored"] = frame[~frame["counted"]].groupby("class").size().reindex(data.class_names, fill_value=0)
    table.loc["total"] = table.sum()
    return table.astype(int)


def decode_problem(file: Path, width: int, height: int) -> str | None:
    """Why an image file cannot be what its annotation says: undecodable, or of another size; None if it is."""
    try:
        with Image.open(file) as image:
            image.load()  # decodes every pixel: a truncated JPEG fails here, not at open()
            size = image.size
    except (OSError, Image.DecompressionBombError) as error:
        return undecodable(file, error)
    return size_mismatch(file, *size, width, height)


def check_images(sizes: dict[Path, tuple[int, int]], workers: int | None = None, progress: bool = True) -> list[str]:
    """Decode every image (in parallel processes) and compare its size with the annotation's; the problems found."""
    workers = workers or os.cpu_count() or 1
    items = sorted(sizes.items())
    problems = [problem for file, (w, h) in items if (problem := too_small_to_train(file, w, h))]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode_problem, *zip(*((f, w, h) for f, (w, h) in items)), chunksize=64) if items else []
        for problem in tqdm(results, total=len(items), desc="decode", unit="img", disable=not progress, mininterval=5):
            if problem:
                problems.append(problem)
    return problems


def check_folder(
    folder: Path,
    workers: int | None = None,
    progress: bool = True,
    annotations: Path | None = None,
    classes: list[str] | None = None,
) -> tuple[list[tuple[str, DetectionSet]], list[str]]:
    """Find every dataset split under ``folder`` (toy, VOCdevkit, COCO, or a VOC-layout folder of your own; with
    ``annotations``, the COCO JSON of the images in ``folder``), read it whole, decode every image; return the splits
    read and every problem found, each naming its file."""
    from .registry import load_dataset

    folder = Path(folder)
    candidates = []
    extra = {}
    if annotations is not None:
        candidates += [("coco_json", folder, Path(annotations).stem)]
        extra = {"annotations": annotations}
    elif (folder / "Annotations").is_dir() and (folder / "ImageSets" / "Main").is_dir():
        splits = sorted(p.stem for p in (folder / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        candidates += [("voc_folder", folder, split) for split in splits]
        extra = {"classes": classes}
    elif (folder / "toy.json").is_file():
        candidates += [(kind, folder, split) for kind in ("toy_voc", "toy_coco") for split in _train_and_test(kind)]
    else:
        if (folder / "VOC2007").is_dir() or (folder / "VOC2012").is_dir():
            candidates += [("voc", folder, split) for split in _train_and_test("voc")]
        if (folder / "annotations").is_dir():
            candidates += [("coco", folder, split) for split in _train_and_test("coco")]
    if not candidates:
        return [], [
            f"{folder}: no toy, VOCdevkit, COCO or VOC-folder layout found (for a COCO JSON of your own, "
            "give --annotations)"
        ]
    found, problems = [], []
    for kind, root, split in candidates:
        try:
            data = load_dataset(kind, root, split, problems, **extra)
        except (DatasetError, OSError) as error:
            problems.append(f"{kind}/{split}: {error}")
            continue
        if data.dropped:
            problems.append(f"{kind}/{split}: {data.dropped} degenerate box(es) dropped after clipping")
        found.append((f"{kind}/{split}", data))
    sizes = {record.file: (record.width, record.height) for _, data in found for record in data.records}
    problems += check_images(sizes, workers, progress)
    return found, problems


def _train_and_test(kind: str) -> tuple[str, str]:
    from .registry import dataset_spec

    spec = dataset_spec(kind)
    return spec.train_split, spec.test_split


__all__ = ["check_folder", "check_images", "decode_problem", "size_bucket", "summarize"]
