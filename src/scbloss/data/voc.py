"""PASCAL VOC reader: Annotations/*.xml + ImageSets/Main/{split}.txt + JPEGImages."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .records import DatasetError, DetectionSet, ImageRecord, sanitize_boxes

log = logging.getLogger(__name__)

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def _text(node: ET.Element, tag: str, source: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DatasetError(f"{source}: missing <{tag}>")
    return child.text.strip()


def read_voc_annotation(
    xml_file: Path, image_dir: Path, classes: Sequence[str], image_id: int
) -> tuple[ImageRecord, int]:
    """One VOC XML file -> record (boxes converted to 0-based pixels, as ssd.pytorch does) and the dropped count."""
    if not xml_file.is_file():
        raise DatasetError(f"{xml_file}: the split lists this image, but its annotation file does not exist")
    try:
        root = ET.parse(xml_file).getroot()
    except (ET.ParseError, OSError) as error:
        raise DatasetError(f"{xml_file}: malformed XML ({error})") from error
    filename = _text(root, "filename", xml_file)
    image_file = image_dir / filename
    if not image_file.is_file():
        raise DatasetError(f"{xml_file}: image {image_file} does not exist")
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{xml_file}: missing <size>")
    try:
        width, height = int(_text(size, "width", xml_file)), int(_text(size, "height", xml_file))
    except ValueError as error:
        raise DatasetError(f"{xml_file}: <size> is not integer ({error})") from error
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = _text(obj, "name", xml_file)
        if name not in classes:
            raise DatasetError(f"{xml_file}: unknown class {name!r} (expected one of {', '.join(classes)})")
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{xml_file}: object {name!r} has no <bndbox>")
        try:
            coords = [float(_text(box, tag, xml_file)) - 1.0 for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as error:
            raise DatasetError(f"{xml_file}: non-numeric box coordinate ({error})") from error
        flag = obj.find("difficult")
        boxes.append(coords)
        labels.append(classes.index(name) + 1)
        difficult.append(flag is not None and (flag.text or "0").strip() == "1")
    clipped, keep = sanitize_boxes(
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        width,
        height,
        str(xml_file),
        max_x=width - 1,
        max_y=height - 1,
    )
    record = ImageRecord(
        image_id=image_id,
        file=image_file,
        width=width,
        height=height,
        boxes=clipped[keep],
        labels=np.array(labels, dtype=np.int64)[keep],
        difficult=np.array(difficult, dtype=bool)[keep],
        crowd=np.zeros(int(keep.sum()), dtype=bool),
        name=xml_file.stem,
    )
    return record, int((~keep).sum())


def voc_folder_classes(folder: Path) -> list[str]:
    """Every class name the annotations of a VOC-layout folder use, sorted (logged: the labels follow this order)."""
    annotations = Path(folder) / "Annotations"
    if not annotations.is_dir():
        raise DatasetError(
            f"{annotations}: no such folder (a VOC-layout folder has Annotations/, JPEGImages/ and "
            "ImageSets/Main/<split>.txt)"
        )
    names = set()
    for xml_file in sorted(annotations.glob("*.xml")):
        try:
            names.update(_text(obj, "name", xml_file) for obj in ET.parse(xml_file).getroot().iter("object"))
        except ET.ParseError as error:
            raise DatasetError(f"{xml_file}: malformed XML ({error})") from error
    if not names:
        raise DatasetError(f"{annotations}: no annotated object, so no class to learn")
    classes = sorted(names)
    log.info(
        "%s: %d classes read from the annotations, in this label order: %s", folder, len(classes), ", ".join(classes)
    )
    return classes


def read_voc(
    devkit: Path,
    year_splits: Iterable[tuple[str, str]],
    classes: Sequence[str] = VOC_CLASSES,
    problems: list[str] | None = None,
    year_is_folder: bool = False,
) -> DetectionSet:
    """Read e.g. [("2007", "trainval"), ("2012", "trainval")] from a VOCdevkit folder, in split-file order.

    Image ids are running numbers over the union, so records from different years never collide. A bad
    annotation raises :class:`DatasetError`, or, when a ``problems`` list is given, is reported there and skipped.
    With ``year_is_folder`` the "years" are folder names below ``devkit`` (a user's VOC-layout folder).
    """
    records, dropped = [], 0
    for year, split in year_splits:
        base = Path(devkit) / (year if year_is_folder else f"VOC{year}")
        split_file = base / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            raise DatasetError(f"{split_file}: split file does not exist")
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]  # names may hold spaces
        if not names:
            raise DatasetError(f"{split_file}: the split lists no images")
        for line in names:
            try:
                record, lost = read_voc_annotation(
                    base / "Annotations" / f"{line}.xml", base / "JPEGImages", classes, image_id=len(records)
                )
            except DatasetError as error:
                if problems is None:
                    raise
                problems.append(str(error))
                continue
            records.append(record)
            dropped += lost
    return DetectionSet(records, list(classes), "voc", dropped=dropped)


__all__ = ["VOC_CLASSES", "read_voc", "read_voc_annotation"]
