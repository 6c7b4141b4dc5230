"""Datasets: download and verify, read VOC/COCO/toy into one record format, augment and load."""

from .records import DatasetError, DetectionSet, ImageRecord
from .registry import KINDS, DatasetSpec, dataset_spec, load_dataset

__all__ = ["DatasetError", "DetectionSet", "ImageRecord", "KINDS", "DatasetSpec", "dataset_spec", "load_dataset"]
