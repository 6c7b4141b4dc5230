import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from scbloss import detectors
from scbloss.data import load_dataset
from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.detection import PriorLayout
from scbloss.engine.checkpoint import ModelMeta
from scbloss.engine.config import config_from_dict
from scbloss.engine.evaluate import evaluate, write_test_dev_submission
from scbloss.engine.matchstats import matching_statistics, plot_histograms
from scbloss.engine.predict import predict
from scbloss.engine.train import train
from scbloss.models.base import SingleShotDetector
from scbloss.recipes import recipe


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=8, test_images=5, seed=2))


class _Oracle(SingleShotDetector):
    """Predicts, for each ground-truth object of the images it is shown in order, the prior that best covers it."""

    def __init__(self, data, layout):
        super().__init__(layout, data.num_classes + 1)
        self.data, self.next = data, 0

    def _background_everywhere(self, images):
        """(loc, conf) of a batch where every prior is confidently background, and the batch's records in order."""
        loc = torch.zeros(len(images), len(self.priors), 4)
        conf = torch.zeros(len(images), len(self.priors), self.data.num_classes + 1)
        conf[..., 0] = 10.0
        records = self.data.records[self.next : self.next + len(images)]
        self.next += len(images)
        return loc, conf, records

    def forward(self, images):
        from torchvision.ops import box_iou

        loc, conf, records = self._background_everywhere(images)
        for b, record in enumerate(records):
            scale = torch.tensor([record.width, record.height] * 2, dtype=torch.float32)
            for box, label in zip(torch.from_numpy(record.boxes) / scale, record.labels):
                best = box_iou(box[None], self.priors).argmax()
                conf[b, best, label] = 20.0
        return loc, conf


def test_predict_maps_boxes_to_original_pixels_and_category_ids(toy):
    data = load_dataset("toy_coco", toy, "val")
    layout = PriorLayout(300, (38, 19), (8.0, 16.0), (30.0, 60.0), (60.0, 111.0), ((2,), (2, 3)))
    oracle = _Oracle(data, layout)
    detections = predict(oracle, data, batch_size=2, num_workers=0, progress=False)
    assert {d["category_id"] for d in detections} <= {1, 3, 5, 7}
    first = data.records[0]
    own = [d for d in detections if d["image_id"] == first.image_id and d["score"] > 0.5]
    assert len(own) == len(first)
    scale = torch.tensor([first.width, first.height] * 2)
    from torchvision.ops import box_iou

    for det in own:
        x, y, w, h = det["bbox"]
        box = torch.tensor([[x, y, x + w, y + h]])
        # the prior the oracle chose for an object, clipped to the image, in original pixels
        expected = oracle.priors[box_iou(box / scale, oracle.priors).argmax()].clamp(0, 1) * scale
        assert box[0].tolist() == pytest.approx(expected.tolist(), abs=0.01)
        label = data.category_ids.index(det["category_id"]) + 1
        hit = box_iou(box, torch.from_numpy(first.boxes)).max(dim=1)
        assert first.labels[hit.indices.item()] == label


def _mmdet_v1_boxes(data, record) -> list[tuple[list[float], int]]:
    """(box, label) of each object as mmdetection v1.0 reads the annotation file, derived here from the file:
    VOC the XML corners minus 1 (SCB_Loss mmdet/datasets/xml_style.py L50-55, L73), COCO [x, y, x + w - 1,
    y + h - 1] (mmdet/datasets/coco.py L81)."""
    import xml.etree.ElementTree as ElementTree

    if data.kind == "voc":
        xml = record.file.parent.parent / "Annotations" / f"{record.name}.xml"
        found = []
        for obj in ElementTree.parse(xml).getroot().iter("object"):
            corners = [int(obj.find("bndbox").find(tag).text) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")]
            found.append((corners, data.class_names.index(obj.find("name").text) + 1))
        return found
    annotations = json.loads(data.annotation_file.read_text())["annotations"]
    return [
        ([x, y, x + w - 1, y + h - 1], data.category_ids.index(a["category_id"]) + 1)
        for a in annotations
        if a["image_id"] == record.image_id
        for x, y, w, h in [a["bbox"]]
    ]


class _ExactOracle(_Oracle):
    """Predicts every object of the images it is shown, in order, exactly, through its best prior, in mmdetection
    v1's frame: the object as mmdetection reads it, resized to the input, with the inclusive pixel added."""

    def forward(self, images):
        from scbloss.detection.box_coder import BoxCoder

        size = self.layout.image_size
        loc, conf, records = self._background_everywhere(images)
        for b, record in enumerate(records):
            for corners, label in _mmdet_v1_boxes(self.data, record):
                scale = torch.tensor([record.width, record.height] * 2, dtype=torch.float64)
                frame = (torch.tensor(corners, dtype=torch.float64) * size / scale + torch.tensor([0, 0, 1, 1])) / size
                frame = frame.float()
                best = int(((self.priors - frame).abs()).sum(dim=1).argmin())
                loc[b, best] = BoxCoder((0.1, 0.2)).encode(frame[None], self.priors[best : best + 1])[0]
                conf[b, best, label] = 20.0
        return loc, conf


@pytest.mark.parametrize("kind,split", [("toy_voc", "test"), ("toy_coco", "val")])
def test_detections_of_the_authors_frame_come_back_in_our_readers_convention(toy, kind, split):
    """A model that finds every object exactly as mmdetection v1 reads it (boxes derived from the annotation files)
    reports our readers' boxes: VOC's are mmdetection's (both subtract 1 from the XML), COCO's end a pixel later."""
    from scbloss import detectors
    from scbloss.recipes import recipe

    data = load_dataset(kind, toy, split)
    layout = recipe("authors").layout(detectors.get("ssd300").layout("voc"))
    detections = predict(_ExactOracle(data, layout), data, batch_size=2, num_workers=0, progress=False)
    for record in data.records:
        found = sorted(
            [d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]
            for d in detections
            if d["image_id"] == record.image_id and d["score"] > 0.5
        )
        assert np.allclose(found, sorted(record.boxes.tolist()), atol=0.02), record.file


@pytest.mark.slow
def test_the_authors_recipe_trains_on_both_augmentation_paths_and_tests_at_its_score_floor(toy, tmp_path):
    """recipe: authors end to end: the same weights whichever path augments (the draws and pixels are the same),
    the recipe in the model file and the metrics, mAP counted above 0.02 while recall keeps 0.01."""
    finals = {}
    for augment_on in ("cpu", "gpu"):  # "gpu": the device path, here on the CPU
        config = config_from_dict(
            {
                "model": "ssd300",
                "recipe": "authors",
                "width": 0.125,
                "batch_norm": True,
                "dataset": {"kind": "toy_voc", "root": str(toy), "split": "trainval"},
                "batch_size": 2,
                "max_iter": 2,
                "num_workers": 0,
                "augment_on": augment_on,
            }
        )
        finals[augment_on] = train(config, tmp_path / augment_on)
    cpu, device = (torch.load(finals[k], weights_only=True) for k in ("cpu", "gpu"))
    assert cpu["meta"]["recipe"] == "authors" and cpu["meta"]["normalization"] == "mmdet_caffe"
    assert all(torch.allclose(cpu["model"][k], device["model"][k], atol=1e-6) for k in cpu["model"])
    metrics = evaluate(finals["cpu"], "toy_voc", toy, "test", tmp_path / "eval", num_workers=0)
    assert metrics["recipe"] == "authors" and metrics["test"]["score_threshold"] == 0.02


def test_the_authors_map_counts_scores_above_its_floor_and_recall_keeps_the_rest(toy, tmp_path, monkeypatch):
    """Every object found exactly, at score 0.015: recall at 0.01 is 100%, but the authors' test (score > 0.02)
    keeps none of them for mAP, which is then 0 for every class; at 0.025 they all count (AP 100)."""
    from scbloss.engine import evaluate as module

    data = load_dataset("toy_voc", toy, "test")
    model = SingleShotDetector(recipe("authors").layout(detectors.get("ssd300").layout("voc")), data.num_classes + 1)
    meta = ModelMeta(model="ssd300", num_classes=data.num_classes + 1, recipe="authors", class_names=data.class_names)
    monkeypatch.setattr(module, "load_trained", lambda path, device: (model, meta))
    for score, expected_map in ((0.015, 0.0), (0.025, 100.0)):
        exact = [
            {"image_id": r.image_id, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            for r in data.records
            for (x1, y1, x2, y2), label, hard in zip(r.boxes.tolist(), r.labels, r.difficult)
            if not hard
        ]
        monkeypatch.setattr(module, "predict", lambda *args, found=exact, **kwargs: found)
        metrics = evaluate("model.pt", "toy_voc", toy, "test", tmp_path / str(score), num_workers=0)
        assert metrics["voc_map"] == pytest.approx(expected_map)
        counted = [e for e in metrics["recall"] if e["total"]]
        assert all(e["hits"] == e["total"] for e in counted if e["threshold"] == 0.01)
        assert all(e["hits"] == 0 for e in counted if e["threshold"] == 0.1)


@pytest.mark.slow
def test_train_then_evaluate_voc_and_coco_layouts(toy, tmp_path):
    config = config_from_dict(
        {
            "model": "ssd300",
            "width": 0.125,
            "dataset": {"kind": "toy_voc", "root": str(toy), "split": "trainval"},
            "batch_size": 2,
            "max_iter": 2,
            "num_workers": 0,
            "log_every": 1,
        }
    )
    final = train(config, tmp_path / "run")
    voc = evaluate(final, "toy_voc", toy, "test", tmp_path / "eval_voc", num_workers=0)
    assert set(voc["ap_per_class"]) == {"disc", "square", "triangle", "cross"}
    assert 0.0 <= voc["voc_map"] <= 100.0 and voc["voc_protocol"] == "VOC2007 11-point"
    recall = pd.read_csv(tmp_path / "eval_voc" / "recall.csv")
    assert recall["threshold"].tolist() == [0.01] * 3 + [0.1] * 3 + [0.3] * 3
    assert json.loads((tmp_path / "eval_voc" / "metrics.json").read_text())["voc_map"] == voc["voc_map"]
    coco = evaluate(final, "toy_coco", toy, "val", tmp_path / "eval_coco", num_workers=0)
    assert list(coco["coco"]) == [
        "AP",
        "AP50",
        "AP75",
        "AP_S",
        "AP_M",
        "AP_L",
        "AR_1",
        "AR_10",
        "AR_100",
        "AR_S",
        "AR_M",
        "AR_L",
    ]
    state = torch.load(final, weights_only=True)
    state["meta"]["class_names"] = ["cat", "dog", "cow", "sheep"]
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt: trained on classes \['cat'"):
        evaluate(tmp_path / "other.pt", "toy_voc", toy, "test", tmp_path / "x", num_workers=0)


def test_test_dev_submission_file(tmp_path):
    dets = [{"image_id": 1, "category_id": 18, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]
    path = write_test_dev_submission(dets, tmp_path, "ssd300_scb")
    assert path.name == "detections_test-dev2017_ssd300_scb_results.zip"
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["detections_test-dev2017_ssd300_scb_results.json"]
        assert json.loads(archive.read(archive.namelist()[0])) == dets


@pytest.mark.parametrize(
    "model,recipe_name,expected",
    [
        ("ssd300", "original", {"score_threshold": 0.01, "pre_nms_top_k": 400, "per_image": 200}),  # ssd_pascal.py
        ("refinedet320", "original", {"score_threshold": 0.01, "pre_nms_top_k": 1000, "per_image": 500}),
        ("ssd300", "authors", {"score_threshold": 0.02, "pre_nms_top_k": None, "per_image": 200}),  # SCB_Loss
    ],
)
def test_each_model_is_tested_as_its_recipe_says(toy, tmp_path, monkeypatch, model, recipe_name, expected):
    """The original recipe tests each detector as its own scripts do (RefineDet: VGG16_VOC2007_320.py L396-398,
    top 1000 per class, 500 per image), the authors recipe as SCB_Loss does; predictions go down to 0.01 for the
    recall tables in every case."""
    from scbloss.engine import evaluate as module

    data = load_dataset("toy_voc", toy, "test")
    meta = ModelMeta(model=model, num_classes=data.num_classes + 1, recipe=recipe_name, class_names=data.class_names)
    monkeypatch.setattr(module, "load_trained", lambda path, device: (None, meta))
    asked = {}
    monkeypatch.setattr(module, "predict", lambda *args, **kwargs: asked.update(kwargs) or [])
    metrics = evaluate("model.pt", "toy_voc", toy, "test", tmp_path, num_workers=0)
    assert metrics["test"] == expected and metrics["recipe"] == recipe_name
    assert (asked["score_threshold"], asked["pre_nms_top_k"], asked["per_image"]) == (
        0.01,
        expected["pre_nms_top_k"],
        expected["per_image"],
    )


def test_matching_statistics_by_hand(tmp_path):
    from scbloss.data.records import DetectionSet, ImageRecord

    layout = PriorLayout(100, (2,), (50.0,), (50.0,), (70.0,), ((),))  # 2x2 cells, squares of 50 and 59.16 px
    # Object 1 covers the top-left cell exactly: IoU 1 with its 50-px prior and 2500/3500 = 0.71 with its 59-px
    # prior (which contains it) -> M = 2, area 2500 px -> medium.
    # Object 2, 30 px inside the bottom-right cell: IoU 900/2500 = 0.36 and 900/3500 = 0.26, nothing >= 0.5,
    # so it is forced onto the 50-px prior -> M = 1, area 900 <= 32^2 -> small.
    boxes = np.array([[0, 0, 50, 50], [60, 60, 90, 90]], dtype=np.float32)
    record = ImageRecord(0, None, 100, 100, boxes, np.array([1, 1]), np.zeros(2, bool), np.zeros(2, bool))
    stats = matching_statistics(DetectionSet([record], ["a"], "voc"), layout)
    assert stats["matches"].tolist() == [2, 1]
    assert stats["bucket"].tolist() == ["medium", "small"]
    plot_histograms(stats, tmp_path / "m.png", "test")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_matching_statistics_count_m_as_the_recipes_loss_does():
    """The same object, M by hand in each recipe's frame (2x2 cells of 50 px, squares of 50 and sqrt(50 * 70) px).
    Ours, normalized: the box [0, 0, 35, 49] covers 1715 px^2 of the 2500 of the small prior (IoU 0.69) and of
    the 3500 of the large one (0.49): M = 1. The authors': mmdetection's pixel [0, 49] is 36 x 50 = 1800 px^2, its
    anchors are rounded to [0, 0, 50, 50] (0.72) and [-5, -5, 55, 55], 3600 px^2 (0.50): M = 2."""
    from scbloss.data.records import DetectionSet, ImageRecord
    from scbloss.recipes import recipe

    layout = PriorLayout(100, (2,), (50.0,), (50.0,), (70.0,), ((),))
    boxes = np.array([[0, 0, 35, 49]], dtype=np.float32)
    record = ImageRecord(0, None, 100, 100, boxes, np.array([1]), np.zeros(1, bool), np.zeros(1, bool))
    data = DetectionSet([record], ["a"], "voc")
    assert matching_statistics(data, layout)["matches"].tolist() == [1]
    authors = matching_statistics(data, recipe("authors").layout(layout), recipe_name="authors")
    assert authors["matches"].tolist() == [2] and authors["bucket"].tolist() == ["medium"]
