"""Dataset kinds: each declared once, as a :class:`DatasetSpec`, as detectors are declared by a ``DetectorSpec``.

A spec says how a kind is read (its reader and, for the official layouts, its named splits), how it is annotated
and evaluated (``annotation_format``), which recipe's prior sizes a detector trained on it uses
(``prior_family``) and its default training and test splits. Nothing else in the project tells kinds apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .coco import read_coco
from .records import DetectionSet
from .toy import TOY_CLASSES
from .voc import VOC_CLASSES, read_voc, voc_folder_classes

# VOC: train on VOC07 trainval + VOC12 trainval, test on VOC07 test (the paper's Sec. 4.1).
VOC_SPLITS = {"trainval": (("2007", "trainval"), ("2012", "trainval")), "test": (("2007", "test"),)}
# COCO 2017: train2017 is the old trainval35k, val2017 the old minival (the paper's Tables 5-9).
COCO_SPLITS = {
    "train": ("annotations/instances_train2017.json", "train2017"),
    "val": ("annotations/instances_val2017.json", "val2017"),
    "test-dev": ("annotations/image_info_test-dev2017.json", "test2017"),
}
TOY_VOC_SPLITS = {"trainval": (("2007", "trainval"),), "test": (("2007", "test"),)}
TOY_COCO_SPLITS = {"train": COCO_SPLITS["train"], "val": COCO_SPLITS["val"]}


@dataclass(frozen=True)
class DatasetSpec:
    """One kind of dataset.

    ``read(spec, root, split, problems, classes, annotations)`` returns its :class:`DetectionSet`; ``splits`` are
    the named splits of an official layout (None: a folder of your own, whose split names are yours);
    ``annotation_format`` ('voc' or 'coco') decides the metric, ``prior_family`` ('voc' or 'coco') the prior sizes.
    """

    kind: str
    read: Callable[..., DetectionSet]
    annotation_format: str
    prior_family: str
    train_split: str
    test_split: str
    splits: Mapping | None = None
    origin: str = "official"  # official (downloaded or on disk), toy (scbloss data toy) or yours (a folder of yours)

    def split_entry(self, split: str):
        """The layout's entry for ``split``; an unknown split of an official layout is an error naming the choices."""
        if self.splits is None:
            return split
        if split not in self.splits:
            raise ValueError(f"{self.kind}: unknown split {split!r}; choose one of {', '.join(self.splits)}")
        return self.splits[split]


def _read_devkit(spec: DatasetSpec, root: Path, split: str, problems, classes, annotations) -> DetectionSet:
    names = VOC_CLASSES if spec.kind == "voc" else TOY_CLASSES
    devkit = root if spec.kind == "voc" else root / "VOCdevkit"
    return read_voc(devkit, list(spec.split_entry(split)), names, problems)


def _read_coco_layout(spec: DatasetSpec, root: Path, split: str, problems, classes, annotations) -> DetectionSet:
    base = root if spec.kind == "coco" else root / "coco"
    annotation_file, images = spec.split_entry(split)
    return read_coco(base / annotation_file, base / images, check_images=True, problems=problems)


def _read_voc_folder(spec: DatasetSpec, root: Path, split: str, problems, classes, annotations) -> DetectionSet:
    names = list(classes) if classes else voc_folder_classes(root)
    return read_voc(root.parent, [(root.name, split)], names, problems, year_is_folder=True)


def _read_coco_json(spec: DatasetSpec, root: Path, split: str, problems, classes, annotations) -> DetectionSet:
    if annotations is None:
        raise ValueError("coco_json: the split's annotations (a COCO JSON file) are needed")
    return read_coco(Path(annotations), root, check_images=True, problems=problems, warn_on_gaps=True)


DATASETS: dict[str, DatasetSpec] = {
    spec.kind: spec
    for spec in (
        DatasetSpec("voc", _read_devkit, "voc", "voc", "trainval", "test", VOC_SPLITS),
        DatasetSpec("coco", _read_coco_layout, "coco", "coco", "train", "val", COCO_SPLITS),
        DatasetSpec("toy_voc", _read_devkit, "voc", "voc", "trainval", "test", TOY_VOC_SPLITS, "toy"),
        DatasetSpec("toy_coco", _read_coco_layout, "coco", "coco", "train", "val", TOY_COCO_SPLITS, "toy"),
        DatasetSpec("voc_folder", _read_voc_folder, "voc", "voc", "trainval", "test", None, "yours"),
        DatasetSpec("coco_json", _read_coco_json, "coco", "coco", "train", "val", None, "yours"),
    )
}
KINDS = tuple(DATASETS)


def dataset_spec(kind: str) -> DatasetSpec:
    try:
        return DATASETS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}") from None


def kind_of(annotation_format: str, origin: str) -> str:
    """The kind that reads data of ``origin`` (official, toy, yours) annotated in ``annotation_format``."""
    found = [s.kind for s in DATASETS.values() if (s.annotation_format, s.origin) == (annotation_format, origin)]
    if not found:
        raise ValueError(f"no dataset kind reads {origin} data in the {annotation_format} layout")
    return found[0]


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
    spec = dataset_spec(kind)
    return spec.read(spec, Path(root), split, problems, classes, annotations)


__all__ = ["DATASETS", "DatasetSpec", "KINDS", "dataset_spec", "kind_of", "load_dataset"]
