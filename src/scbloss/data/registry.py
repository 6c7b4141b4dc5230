"""Named dataset splits -> DetectionSet, for the paper's datasets and the toy one."""

from __future__ import annotations

from pathlib import Path

from .coco import read_coco
from .records import DetectionSet
from .toy import TOY_CLASSES
from .voc import VOC_CLASSES, read_voc, voc_folder_classes

# VOC: train on VOC07 trainval + VOC12 trainval, test on VOC07 test (the paper's Sec. 4.1).
VOC_SPLITS = {"trainval": [("2007", "trainval"), ("2012", "trainval")], "test": [("2007", "test")]}
# COCO 2017: train2017 is the old trainval35k, val2017 the old minival (the paper's Tables 5-9).
COCO_SPLITS = {
    "train": ("annotations/instances_train2017.json", "train2017"),
    "val": ("annotations/instances_val2017.json", "val2017"),
    "test-dev": ("annotations/image_info_test-dev2017.json", "test2017"),
}
TOY_VOC_SPLITS = {"trainval": [("2007", "trainval")], "test": [("2007", "test")]}
TOY_COCO_SPLITS = {"train": COCO_SPLITS["train"], "val": COCO_SPLITS["val"]}

KINDS = ("voc", "coco", "toy_voc", "toy_coco", "voc_folder", "coco_json")


def load_dataset(
    kind: str,
    root: Path,
    split: str,
    problems: list[str] | None = None,
    classes: list[str] | None = None,
    annotations: str | Path | None = None,
) -> DetectionSet:
    """kind: voc (root = VOCdevkit), coco (root = the folder with annotations/, train2017/...), toy_voc or toy_coco
    (root = a folder written by ``scbloss data toy``); for your own data, voc_folder (root = a folder with
    Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt; ``classes`` as listed, else every class the
    annotations name, sorted) or coco_json (``annotations`` = the split's COCO JSON, root = its image folder). With a
    ``problems`` list, bad annotations are reported there and skipped instead of raising."""
    root = Path(root)
    if kind == "voc_folder":
        names = list(classes) if classes else voc_folder_classes(root)
        return read_voc(root.parent, [(root.name, split)], names, problems, year_is_folder=True)
    if kind == "coco_json":
        if annotations is None:
            raise ValueError("coco_json: the split's annotations (a COCO JSON file) are needed")
        return read_coco(Path(annotations), root, check_images=True, problems=problems, warn_on_gaps=True)
    if kind in ("voc", "toy_voc"):
        splits, classes = (VOC_SPLITS, VOC_CLASSES) if kind == "voc" else (TOY_VOC_SPLITS, TOY_CLASSES)
        devkit = root if kind == "voc" else root / "VOCdevkit"
        if split not in splits:
            raise ValueError(f"{kind}: unknown split {split!r}; choose one of {', '.join(splits)}")
        return read_voc(devkit, splits[split], classes, problems)
    if kind in ("coco", "toy_coco"):
        splits = COCO_SPLITS if kind == "coco" else TOY_COCO_SPLITS
        base = root if kind == "coco" else root / "coco"
        if split not in splits:
            raise ValueError(f"{kind}: unknown split {split!r}; choose one of {', '.join(splits)}")
        annotations, images = splits[split]
        return read_coco(base / annotations, base / images, check_images=True, problems=problems)
    raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")


__all__ = ["KINDS", "load_dataset"]
