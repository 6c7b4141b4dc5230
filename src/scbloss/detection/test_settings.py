"""How a detector's outputs become detections at test time: plain data, no torch (the workflow imports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestSettings:
    """Softmax scores above ``score_threshold``; at most ``pre_nms_top_k`` candidates per class before per-class NMS
    (None: every prior); the ``per_image`` best after it."""

    __test__ = False  # not a pytest test class

    score_threshold: float = 0.01
    pre_nms_top_k: int | None = 400
    per_image: int = 200


# Caffe SSD's test (ssd_pascal.py L396-406: confidence_threshold 0.01, top_k 400, keep_top_k 200), which FSSD and
# DSSD keep
SSD_TEST = TestSettings()

__all__ = ["SSD_TEST", "TestSettings"]
