import json

import numpy as np
import pytest

from scbloss.data import load_dataset
from scbloss.data.check import size_bucket
from scbloss.data.toy import TOY_CLASSES, ToyConfig, generate_toy, render_image


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=60, test_images=20, seed=3))


@pytest.mark.slow
def test_deterministic_for_a_seed(toy, tmp_path):
    again = generate_toy(tmp_path / "again", ToyConfig(train_images=60, test_images=20, seed=3))
    other = generate_toy(tmp_path / "other", ToyConfig(train_images=60, test_images=20, seed=4))
    name = "VOCdevkit/VOC2007/JPEGImages/000005.jpg"
    assert (toy / name).read_bytes() == (again / name).read_bytes() != (other / name).read_bytes()
    ann = "coco/annotations/instances_train2017.json"
    assert (toy / ann).read_text() == (again / ann).read_text()


def test_voc_and_coco_layouts_hold_the_same_objects(toy):
    voc = load_dataset("toy_voc", toy, "trainval")
    coco = load_dataset("toy_coco", toy, "train")
    assert len(voc.records) == len(coco.records) == 60
    assert coco.category_ids == [1, 3, 5, 7] and coco.class_names == voc.class_names == TOY_CLASSES
    for v, c in zip(voc.records, coco.records):
        assert v.labels.tolist() == c.labels.tolist()
        assert v.difficult.tolist() == c.crowd.tolist()
        # VOC stores inclusive pixel corners, COCO pixel-edge boxes: they differ by exactly one on x2, y2
        np.testing.assert_array_equal(v.boxes + np.array([0, 0, 1, 1]), c.boxes)


def test_objects_of_every_size_difficult_ones_and_empty_images(toy):
    records = load_dataset("toy_voc", toy, "trainval").records
    buckets = np.concatenate([size_bucket(r.boxes, plus_one=True) for r in records])
    assert {b: int((buckets == b).sum()) > 10 for b in ("small", "medium", "large")} == {
        "small": True,
        "medium": True,
        "large": True,
    }
    assert sum(r.difficult.sum() for r in records) > 0
    assert any(len(r) == 0 for r in records)
    assert max(len(r) for r in records) > 2
    assert json.loads((toy / "toy.json").read_text())["classes"] == TOY_CLASSES


def test_boxes_are_tight_around_the_drawn_pixels():
    rng = np.random.default_rng(11)
    for _ in range(5):
        image, objects = render_image(rng, ToyConfig())
        pixels = np.asarray(image, dtype=np.int32)
        for obj in objects:
            if obj["difficult"]:
                continue
            x1, y1, x2, y2 = obj["box"]
            colour = {
                "disc": (225, 50, 50),
                "square": (50, 120, 235),
                "triangle": (240, 205, 30),
                "cross": (40, 190, 80),
            }[obj["name"]]
            # the class colour (darkened by its texture) reaches every edge of the box ...
            close = (np.abs(pixels - np.array(colour) * 0.55).max(-1) < 45) | (np.abs(pixels - colour).max(-1) < 45)
            inside = close[y1 : y2 + 1, x1 : x2 + 1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            # ... and nothing of the object lies beyond it (the row above and the column left of it are background)
            if y1 > 0:
                assert not close[y1 - 1, x1 : x2 + 1].all()
