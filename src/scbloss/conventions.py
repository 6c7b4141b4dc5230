"""The evaluation conventions every part reads: COCO's statistics, the recall thresholds and the object sizes.

No torch: the workflow (which parses without it), the evaluation and the tables share them.
"""

import numpy as np

# The 12 numbers COCOeval.summarize() prints, in its order.
COCO_STATS = ["AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR_1", "AR_10", "AR_100", "AR_S", "AR_M", "AR_L"]

# Confidence thresholds of the paper's recall tables (Tables 3, 4, 6-9); the config schema's `evaluate.thresholds`
# default repeats them, as YAML cannot import this (tests/test_conventions.py checks they agree).
RECALL_THRESHOLDS = (0.01, 0.1, 0.3)

# COCO's object sizes by area in pixels: small <= 32^2 < medium <= 96^2 < large.
SIZE_BUCKETS = ["small", "medium", "large"]
SMALL_MAX_AREA = 32**2
MEDIUM_MAX_AREA = 96**2


def size_bucket_of_area(area) -> np.ndarray:
    """'small', 'medium' or 'large' for each area in pixels."""
    area = np.asarray(area)
    return np.where(area <= SMALL_MAX_AREA, SIZE_BUCKETS[0], np.where(area <= MEDIUM_MAX_AREA, *SIZE_BUCKETS[1:]))


__all__ = [
    "COCO_STATS",
    "MEDIUM_MAX_AREA",
    "RECALL_THRESHOLDS",
    "SIZE_BUCKETS",
    "SMALL_MAX_AREA",
    "size_bucket_of_area",
]
