"""Our SSD300 (COCO priors, 91 classes) is torchvision's ssd300_vgg16: weights convert both ways, the same input
gives the same head outputs and, with post-processing settings matched, the same detections."""

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16

from scbloss.detection import postprocess
from scbloss.models import build_model
from scbloss.models.torchvision_ssd import from_torchvision, to_torchvision


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    theirs = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91).eval()
    ours = build_model("ssd300", 91, dataset="coco").eval()
    ours.load_state_dict(from_torchvision(theirs.state_dict()), strict=True)
    return ours, theirs


@pytest.mark.slow
def test_priors_are_torchvisions_anchors_in_the_same_order(pair):
    ours, theirs = pair
    images = torch.zeros(1, 3, 300, 300)
    from torchvision.models.detection.image_list import ImageList

    features = list(theirs.backbone(images).values())
    anchors = theirs.anchor_generator(ImageList(images, [(300, 300)]), features)[0]
    assert torch.allclose(ours.priors * 300, anchors, atol=1e-4)


@pytest.mark.slow
def test_the_same_weights_and_input_give_the_same_head_outputs(pair):
    ours, theirs = pair
    images = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(1)) * 60
    with torch.no_grad():
        loc, conf = ours(images)
        head = theirs.head(list(theirs.backbone(images).values()))
    assert (loc - head["bbox_regression"]).abs().max() <= 1e-5
    assert (conf - head["cls_logits"]).abs().max() <= 1e-5


@pytest.mark.slow
def test_matched_post_processing_gives_the_same_detections(pair):
    """torchvision's settings (score > 0.01, 400 candidates per class, NMS 0.45, 200 per image) are ours."""
    ours, theirs = pair
    images = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(2)) * 60
    with torch.no_grad():
        loc, conf = ours(images)
        features = list(theirs.backbone(images).values())
        head = theirs.head(features)
        from torchvision.models.detection.image_list import ImageList

        anchors = theirs.anchor_generator(ImageList(images, [(300, 300)] * 2), features)
        expected = theirs.postprocess_detections(head, anchors, [(300, 300)] * 2)
    got = postprocess(
        loc,
        conf,
        ours.priors,
        score_threshold=theirs.score_thresh,
        nms_iou=theirs.nms_thresh,
        top_k=theirs.detections_per_img,
        pre_nms_top_k=theirs.topk_candidates,
    )
    for mine, reference in zip(got, expected):
        assert len(mine["scores"]) == len(reference["scores"]) > 0
        assert torch.equal(mine["labels"], reference["labels"])
        assert torch.allclose(mine["scores"], reference["scores"], atol=1e-6)
        assert torch.allclose(mine["boxes"] * 300, reference["boxes"], atol=1e-3)


@pytest.mark.slow
def test_weights_convert_back_to_torchvision(pair):
    ours, theirs = pair
    back = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    back.load_state_dict(to_torchvision(ours.state_dict()), strict=True)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in theirs.state_dict().items())
    with pytest.raises(ValueError, match="not an SSD300 state dict of this layout"):
        from_torchvision({"backbone.features.0.weight": torch.zeros(1)})


@pytest.fixture(scope="module")
def torchvision_file(pair, tmp_path_factory):
    """A (random) torchvision ssd300_vgg16 state dict where the COCO-trained one would be downloaded from."""
    _, theirs = pair
    path = tmp_path_factory.mktemp("tv") / "ssd300_vgg16_coco.pth"
    torch.save(theirs.state_dict(), path)
    return path


@pytest.mark.slow
def test_starting_from_torchvisions_detector_keeps_the_datasets_classes(pair, torchvision_file):
    """COCO category ids 1, 3, 5, 7 (the toy set's): the heads keep background + those 4 columns, in that order."""
    from scbloss.models.torchvision_ssd import load_torchvision_detector

    _, theirs = pair
    model = build_model("ssd300", 5, dataset="coco").eval()
    assert "cut to the dataset's 4 categories" in load_torchvision_detector(model, str(torchvision_file), [1, 3, 5, 7])
    images = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(3)) * 60
    with torch.no_grad():
        _, conf = model(images)
        reference = theirs.head(list(theirs.backbone(images).values()))["cls_logits"]
    assert torch.allclose(conf, reference[..., [0, 1, 3, 5, 7]], atol=1e-5)
    other = build_model("ssd300", 21, dataset="coco")
    assert "but the classification heads" in load_torchvision_detector(other, str(torchvision_file), None)


@pytest.mark.slow
def test_torchvisions_published_model_is_evaluated_with_one_command(pair, torchvision_file, tmp_path, monkeypatch):
    """`scbloss evaluate --checkpoint torchvision_coco`: its 91 outputs are COCO ids, its input is torchvision's."""
    from scbloss.cli import main
    from scbloss.data.toy import ToyConfig, generate_toy
    from scbloss.models import torchvision_ssd

    monkeypatch.setattr(torchvision_ssd, "TORCHVISION_COCO_URL", str(torchvision_file))
    toy = generate_toy(tmp_path / "toy", ToyConfig(train_images=2, test_images=3, seed=4))
    code = main(
        [
            "evaluate",
            "--checkpoint",
            "torchvision_coco",
            "--dataset",
            "toy_coco",
            "--root",
            str(toy),
            "--split",
            "val",
            "--out",
            str(tmp_path / "eval"),
            "--workers",
            "0",
        ]
    )
    assert code == 0
    import json

    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    detections = json.loads((tmp_path / "eval" / "detections.json").read_text())
    assert metrics["checkpoint"] == "torchvision_coco" and "coco" in metrics
    assert detections and {d["category_id"] for d in detections} <= set(range(1, 91))


@pytest.mark.slow
def test_a_non_square_jpeg_through_predict_gives_torchvisions_detections(pair, tmp_path):
    """torchvision's SSD normalizes, then resizes bilinearly without antialiasing to 300x300 and scales the boxes
    back: our predict does the same, so on a 500x375 photo-like JPEG the detections agree."""
    import numpy as np
    from PIL import Image, ImageDraw

    from scbloss.data.records import DetectionSet, ImageRecord
    from scbloss.data.transforms import normalization
    from scbloss.engine.predict import predict

    ours, theirs = pair
    rng = np.random.default_rng(7)
    canvas = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        x, y = int(rng.integers(0, 440)), int(rng.integers(0, 320))
        draw.rectangle([x, y, x + 60, y + 50], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    canvas.save(tmp_path / "photo.jpg", quality=90)
    none = np.zeros((0,), dtype=bool)
    record = ImageRecord(
        1, tmp_path / "photo.jpg", 500, 375, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), none, none
    )
    data = DetectionSet([record], [f"c{i}" for i in range(1, 91)], "coco", category_ids=list(range(1, 91)))
    got = predict(ours, data, batch_size=1, num_workers=0, progress=False, normalize=normalization("caffe"))
    with Image.open(tmp_path / "photo.jpg") as handle:
        pixels = torch.from_numpy(np.asarray(handle.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        expected = theirs([pixels])[0]
    assert len(got) == len(expected["scores"]) > 0
    order = sorted(range(len(got)), key=lambda i: -got[i]["score"])
    assert [got[i]["category_id"] for i in order] == expected["labels"].tolist()
    assert torch.allclose(torch.tensor([got[i]["score"] for i in order]), expected["scores"], atol=1e-4)
    xywh = torch.tensor([got[i]["bbox"] for i in order])
    assert torch.allclose(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), expected["boxes"], atol=0.05)
