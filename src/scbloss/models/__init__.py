"""The detectors' networks; :func:`build_model` makes any registered detector by name."""

from __future__ import annotations

from .base import SingleShotDetector
from .build import build_criterion, build_model
from .pretrained import load_resnet101, load_vgg16, read_state_dict

__all__ = [
    "SingleShotDetector",
    "build_criterion",
    "build_model",
    "load_resnet101",
    "load_vgg16",
    "read_state_dict",
]
