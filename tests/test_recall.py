import numpy as np

from scbloss.data.check import size_bucket
from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.engine.recall import format_recall, size_recall


def _record(image_id, boxes, labels, difficult=None, kind_crowd=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    return ImageRecord(
        image_id,
        None,
        500,
        500,
        boxes,
        np.array(labels),
        np.zeros(n, bool) if difficult is None else np.array(difficult),
        np.zeros(n, bool) if kind_crowd is None else np.array(kind_crowd),
    )


def _det(image_id, box, label, score):
    x1, y1, x2, y2 = box
    return {"image_id": image_id, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def test_bucket_edges_at_32_and_96_squared():
    voc_boxes = np.array([[0, 0, 31, 31], [0, 0, 31, 32], [0, 0, 95, 95], [0, 0, 95, 96]], dtype=np.float32)
    assert size_bucket(voc_boxes, plus_one=True).tolist() == ["small", "medium", "medium", "large"]
    wh_boxes = np.array([[0, 0, 32, 32], [0, 0, 32, 33], [0, 0, 96, 96], [0, 0, 96, 97]], dtype=np.float32)
    assert size_bucket(wh_boxes, plus_one=False).tolist() == ["small", "medium", "medium", "large"]


SMALL, MEDIUM, LARGE = [10, 10, 30, 30], [100, 100, 160, 160], [200, 200, 400, 400]


def test_perfect_detector_recalls_everything():
    data = DetectionSet([_record(0, [SMALL, MEDIUM, LARGE], [1, 2, 1])], ["a", "b"], "voc")
    dets = [_det(0, SMALL, 1, 0.95), _det(0, MEDIUM, 2, 0.95), _det(0, LARGE, 1, 0.95)]
    table = size_recall(data, dets)
    assert table["recall"].tolist() == [100.0] * 9 and table["total"].tolist() == [1] * 9


def test_thresholds_classes_overlap_and_ignored_objects():
    data = DetectionSet(
        [
            _record(0, [SMALL, MEDIUM, LARGE, [300, 10, 340, 40]], [1, 2, 1, 1], difficult=[False, False, False, True]),
            _record(1, [SMALL, LARGE], [2, 2]),
        ],
        ["a", "b"],
        "voc",
    )
    dets = [
        _det(0, SMALL, 1, 0.05),  # small hit, but only at threshold 0.01
        _det(0, MEDIUM, 1, 0.9),  # wrong class: no hit
        _det(0, [200, 200, 300, 400], 1, 0.9),  # IoU about 0.5 with the large object: (101*201)/(201*201) >= 0.5
        _det(0, [300, 10, 340, 40], 1, 0.9),  # on the difficult object: not counted anywhere
        _det(1, [200, 200, 260, 260], 2, 0.9),  # IoU far below 0.5
        _det(1, SMALL, 2, 0.2),  # small hit up to threshold 0.1
    ]
    table = size_recall(data, dets).set_index(["threshold", "bucket"])
    assert table.loc[(0.01, "small"), ["hits", "total"]].tolist() == [2, 2]
    assert table.loc[(0.1, "small"), ["hits", "total"]].tolist() == [1, 2]
    assert table.loc[(0.3, "small"), ["hits", "total"]].tolist() == [0, 2]
    assert table.loc[(0.01, "medium"), ["hits", "total"]].tolist() == [0, 1]
    assert table.loc[(0.3, "large"), ["hits", "total"]].tolist() == [1, 2]
    assert table.loc[(0.1, "small"), "recall"] == 50.0


def test_coco_category_ids_and_crowd():
    data = DetectionSet(
        [_record(5, [SMALL, LARGE], [1, 2], kind_crowd=[False, True])], ["a", "b"], "coco", category_ids=[3, 9]
    )
    table = size_recall(data, [_det(5, SMALL, 3, 0.5), _det(5, LARGE, 9, 0.5)]).set_index(["threshold", "bucket"])
    assert table.loc[(0.3, "small"), ["hits", "total"]].tolist() == [1, 1]
    assert table.loc[(0.3, "large"), "total"] == 0  # the crowd object is excluded


def test_paper_format():
    assert format_recall(377, 516) == "73.06 (377/516)"
    assert format_recall(0, 0) == "n/a (0/0)"
