import numpy as np
import pytest

from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.engine.voc_eval import average_precision, voc_ap_per_class


def _record(image_id, boxes, labels, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.array(difficult)
    return ImageRecord(image_id, None, 200, 200, boxes, np.array(labels), difficult, np.zeros(len(boxes), bool))


def _det(image_id, box, label, score):
    x1, y1, x2, y2 = box
    return {"image_id": image_id, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


DATA = DetectionSet(
    [_record(0, [[10, 10, 50, 50], [60, 60, 120, 140]], [1, 2]), _record(1, [[0, 0, 30, 30]], [1])],
    ["a", "b"],
    "voc",
)


def test_perfect_detector_scores_one():
    dets = [_det(r.image_id, b, int(c), 0.9) for r in DATA.records for b, c in zip(r.boxes.tolist(), r.labels)]
    assert voc_ap_per_class(DATA, dets) == {"a": 1.0, "b": 1.0}
    assert voc_ap_per_class(DATA, dets, eleven_point=False) == {"a": 1.0, "b": 1.0}


def test_a_detection_on_a_difficult_object_changes_nothing():
    data = DetectionSet([_record(0, [[10, 10, 50, 50], [100, 100, 150, 150]], [1, 1], [False, True])], ["a"], "voc")
    base = [_det(0, [10, 10, 50, 50], 1, 0.5)]
    assert voc_ap_per_class(data, base)["a"] == 1.0
    assert voc_ap_per_class(data, base + [_det(0, [100, 100, 150, 150], 1, 0.9)])["a"] == 1.0


def test_duplicates_are_false_positives():
    # class a: 2 objects. Ranked: hit obj1 (0.9), duplicate of obj1 (0.8), hit obj2 (0.7)
    dets = [_det(0, [10, 10, 50, 50], 1, 0.9), _det(0, [11, 10, 50, 51], 1, 0.8), _det(1, [0, 0, 30, 30], 1, 0.7)]
    # precision/recall after each: (1, 0.5), (0.5, 0.5), (2/3, 1.0)
    # 11-point: t = 0..0.5 -> best precision at recall >= t is 1 (6 points); t = 0.6..1.0 -> 2/3 (5 points)
    assert voc_ap_per_class(DATA, dets)["a"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # all-point: 0.5 * 1 + 0.5 * 2/3
    assert voc_ap_per_class(DATA, dets, eleven_point=False)["a"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_eleven_point_interpolation_on_a_known_curve():
    recall = np.array([0.2, 0.4, 0.4, 0.65])
    precision = np.array([1.0, 1.0, 2 / 3, 0.75])
    # t = 0, .1, .2, .3, .4 -> 1.0; t = .5, .6 -> 0.75; t = .7 .. 1.0 -> 0
    assert average_precision(recall, precision) == pytest.approx((5 * 1.0 + 2 * 0.75) / 11)
    assert average_precision(recall, precision, eleven_point=False) == pytest.approx(0.2 + 0.2 + 0.25 * 0.75)


def test_overlap_must_exceed_half_with_the_plus_one_convention():
    data = DetectionSet([_record(0, [[0, 0, 9, 9]], [1])], ["a"], "voc")  # 10 x 10 inclusive pixels
    # [0, 0, 9, 4] covers 10 x 5 = 50 of 100 pixels: IoU exactly 0.5, not > 0.5 -> a miss
    assert voc_ap_per_class(data, [_det(0, [0, 0, 9, 4], 1, 0.9)])["a"] == 0.0
    # [0, 0, 9, 5]: 60 / 100 -> a hit
    assert voc_ap_per_class(data, [_det(0, [0, 0, 9, 5], 1, 0.9)])["a"] == 1.0
