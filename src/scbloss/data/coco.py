"""MS COCO reader through pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from .records import DatasetError, DetectionSet, ImageRecord, sanitize_boxes

log = logging.getLogger(__name__)

_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def _bad_annotation(annotation: dict, images: set, categories: set) -> str | None:
    """What is wrong with one annotation entry, or None."""
    bbox = annotation["bbox"]
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        return f"bbox must be 4 numbers [x, y, width, height], got {bbox!r}"
    if annotation["image_id"] not in images:
        return f"image_id {annotation['image_id']!r} is not among the images"
    if annotation["category_id"] not in categories:
        return f"category_id {annotation['category_id']!r} is not among the categories"
    return None


def _duplicate_ids(dataset: dict, annotation_file: Path) -> list[str]:
    """Every id that two entries of a section share, each naming both entries."""
    found = []
    for section in ("images", "annotations", "categories"):
        first = {}
        for index, entry in enumerate(dataset[section]):
            key = entry["id"]
            if key in first:
                found.append(
                    f"{annotation_file}: {section}[{first[key]}] and {section}[{index}] share the id {key!r} "
                    f"({_describe(dataset[section][first[key]])} and {_describe(entry)})"
                )
            else:
                first[key] = index
    return found


def _describe(entry: dict) -> str:
    for key in ("file_name", "name"):
        if key in entry:
            return f"{key} {entry[key]!r}"
    return f"image_id {entry.get('image_id')!r}, bbox {entry.get('bbox')!r}"


def load_coco_api(annotation_file: Path, problems: list[str] | None = None) -> COCO:
    """A pycocotools COCO object for a JSON file, after checking what every reader here relies on.

    A bad annotation raises :class:`DatasetError`, or, when a ``problems`` list is given, is reported there and
    left out.
    """
    annotation_file = Path(annotation_file)
    try:
        dataset = json.loads(annotation_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{annotation_file}: unreadable COCO JSON ({error})") from error
    for section, keys in _REQUIRED.items():
        if section == "annotations" and section not in dataset:
            dataset["annotations"] = []  # image-info files (test-dev) carry no annotations
        if section not in dataset:
            raise DatasetError(f"{annotation_file}: missing top-level key {section!r}")
        for index, entry in enumerate(dataset[section]):
            missing = [key for key in keys if key not in entry]
            if missing:
                raise DatasetError(f"{annotation_file}: {section}[{index}] lacks {', '.join(missing)}")
    duplicates = _duplicate_ids(dataset, annotation_file)
    if duplicates:  # pycocotools would silently keep one entry per id: an image's boxes on another, a box lost
        if problems is not None:
            problems.extend(duplicates)
        more = f" (and {len(duplicates) - 1} more)" if len(duplicates) > 1 else ""
        raise DatasetError(f"{duplicates[0]}{more}; ids must be unique, nothing was read")
    images = {entry["id"] for entry in dataset["images"]}
    categories = {entry["id"] for entry in dataset["categories"]}
    kept = []
    for index, annotation in enumerate(dataset["annotations"]):
        problem = _bad_annotation(annotation, images, categories)
        if problem is None:
            kept.append(annotation)
            continue
        message = f"{annotation_file}: annotations[{index}] (id {annotation['id']}): {problem}"
        if problems is None:
            raise DatasetError(message)
        problems.append(message)
    dataset["annotations"] = kept
    api = COCO()
    api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        api.createIndex()
    return api


def read_coco(
    annotation_file: Path,
    image_dir: Path,
    check_images: bool = True,
    problems: list[str] | None = None,
    warn_on_gaps: bool = False,
) -> DetectionSet:
    """Every image of a COCO JSON (also those without objects), categories mapped to contiguous labels 1..K.

    With a ``problems`` list, bad annotations and missing image files are reported there and left out instead of
    raising :class:`DatasetError`.
    """
    api = load_coco_api(annotation_file, problems)
    if not api.getImgIds():
        raise DatasetError(f"{annotation_file}: the split lists no images")
    category_ids = sorted(api.getCatIds())
    if not category_ids:
        raise DatasetError(f"{annotation_file}: no categories, so no class to learn")
    gaps = sorted(set(range(category_ids[0], category_ids[-1] + 1)) - set(category_ids))
    if gaps and warn_on_gaps:
        log.warning(
            "%s: category ids are not consecutive (none for %s): labels 1..%d follow the ids' order and "
            "detections keep the ids",
            annotation_file,
            ", ".join(map(str, gaps[:10])),
            len(category_ids),
        )
    names = [api.cats[c]["name"] for c in category_ids]
    label_of = {c: i + 1 for i, c in enumerate(category_ids)}
    records, dropped = [], 0
    for image_id in sorted(api.getImgIds()):
        info = api.imgs[image_id]
        image_file = Path(image_dir) / info["file_name"]
        if check_images and not image_file.is_file():
            message = f"{annotation_file}: image {image_file} (id {image_id}) does not exist"
            if problems is None:
                raise DatasetError(message)
            problems.append(message)
            continue
        anns = api.loadAnns(api.getAnnIds(imgIds=[image_id]))
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        unknown = [a["category_id"] for a in anns if a["category_id"] not in label_of]
        if unknown:
            raise DatasetError(f"{annotation_file}: image {image_id} uses unknown category id {unknown[0]}")
        clipped, keep = sanitize_boxes(xyxy, info["width"], info["height"], f"{annotation_file} image {image_id}")
        records.append(
            ImageRecord(
                image_id=image_id,
                file=image_file,
                width=int(info["width"]),
                height=int(info["height"]),
                boxes=clipped[keep],
                labels=np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64)[keep],
                difficult=np.zeros(int(keep.sum()), dtype=bool),
                crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)[keep],
                name=info["file_name"],
            )
        )
        dropped += int((~keep).sum())
    return DetectionSet(records, names, "coco", category_ids, Path(annotation_file), dropped)


__all__ = ["load_coco_api", "read_coco"]
