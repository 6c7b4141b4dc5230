import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scbloss.engine.coco_eval import COCO_STATS, coco_stats


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory):
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in range(1, 21):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(8, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([2, 7, 11])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"c{c}"} for c in (2, 7, 11)],
    }
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    path.write_text(json.dumps(dataset))
    detections = []
    for ann in annotations:  # jittered copies of most objects, some with the wrong class, plus clutter
        if rng.random() < 0.8:
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            category = ann["category_id"] if rng.random() < 0.9 else 7
            detections.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": category,
                    "bbox": list(np.array([x, y, w, h]) + jitter),
                    "score": float(rng.uniform(0.05, 1)),
                }
            )
    for _ in range(60):
        detections.append(
            {
                "image_id": int(rng.integers(1, 21)),
                "category_id": int(rng.choice([2, 7, 11])),
                "bbox": [float(v) for v in rng.uniform(0, 200, 4)],
                "score": float(rng.uniform(0, 0.5)),
            }
        )
    return path, detections


def test_equals_pycocotools_run_directly(ground_truth):
    path, detections = ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = coco_stats(path, detections)
    assert list(ours) == COCO_STATS
    assert list(ours.values()) == pytest.approx([round(100 * v, 4) for v in evaluator.stats], abs=1e-9)
    assert 10 < ours["AP"] < 95  # a meaningful, non-degenerate case


def test_faster_coco_eval_gives_identical_numbers(ground_truth):
    path, detections = ground_truth
    assert coco_stats(path, detections, "faster-coco-eval") == coco_stats(path, detections, "pycocotools")


def test_no_detections_and_unknown_backend(ground_truth):
    path, _ = ground_truth
    assert coco_stats(path, []) == {name: 0.0 for name in COCO_STATS}
    with pytest.raises(ValueError, match="unknown COCO backend"):
        coco_stats(path, ground_truth[1], "detectron")
