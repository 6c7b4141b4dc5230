"""`scbloss detect`: drawings and COCO results of a model file on image files, as the evaluation would detect."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from scbloss.cli import main
from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.data.transforms import normalization
from scbloss.engine import detect as module
from scbloss.engine.checkpoint import ModelMeta, atomic_save, load_trained
from scbloss.engine.detect import BOX_COLOURS, collect_images, draw, drawing_paths
from scbloss.engine.predict import predict
from scbloss.models import build_model

CLASSES = ["cat", "dog"]
GREY = 128


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny SSD300 as `scbloss train` stores it; its heads scaled down so that boxes stay near their priors and
    scores spread over a few hundredths instead of saturating at 1."""
    torch.manual_seed(0)
    model = build_model("ssd300", len(CLASSES) + 1, 0.125, "voc")
    with torch.no_grad():
        for name, parameter in model.head.named_parameters():
            parameter.mul_(0.0 if name.endswith("bias") else 0.3 if name.startswith("conf") else 0.05)
    meta = ModelMeta(model="ssd300", num_classes=len(CLASSES) + 1, width=0.125, class_names=CLASSES, dataset_kind="voc")
    path = tmp_path_factory.mktemp("run") / "model_final.pt"
    atomic_save({"model": model.state_dict(), "meta": meta.to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of two images (noise, a grey field with a dark square) and a text file."""
    folder = tmp_path_factory.mktemp("photos")
    noise = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "a_noise.png")
    square = np.full((140, 100, 3), GREY, dtype=np.uint8)
    square[40:90, 30:70] = 20
    Image.fromarray(square).save(folder / "b_square.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def broken(tmp_path):
    file = tmp_path / "broken.jpg"
    file.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return file


def _expected(model_file, photos) -> list[dict]:
    """What `scbloss evaluate`'s predict reports for the two readable images (ids 1 and 2, in name order)."""
    records = []
    for image_id, name in enumerate(["a_noise.png", "b_square.png"], 1):
        width, height = Image.open(photos / name).size
        empty = np.zeros(0, dtype=bool)
        nothing = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), empty, empty)
        records.append(ImageRecord(image_id, photos / name, width, height, *nothing))
    model, meta = load_trained(model_file, "cpu")
    data = DetectionSet(records, CLASSES, "voc")
    normalize = normalization(meta.normalization)
    return predict(model, data, batch_size=8, num_workers=0, progress=False, normalize=normalize)


def _threshold_binding_one_image_and_top_k_the_other(expected: list[dict]) -> tuple[float, int]:
    """A score threshold halfway between two reported scores and a top-k such that one image keeps fewer than k
    detections (the threshold cuts it) and the other more than k above the threshold (top-k cuts it)."""
    scores = sorted({d["score"] for d in expected}, reverse=True)
    for above, below in zip(scores, scores[1:]):
        threshold = (above + below) / 2
        counts = sorted(sum(d["score"] >= threshold for d in expected if d["image_id"] == i) for i in (1, 2))
        if counts[0] >= 1 and counts[1] >= counts[0] + 2:
            return threshold, counts[0] + 1
    raise AssertionError("no threshold separates the two images' detections")


@pytest.mark.slow  # 3-6 s: two forward passes on this 2-core machine
def test_detect_reports_the_evaluations_detections_above_the_threshold_and_top_k(model_file, photos, tmp_path, capsys):
    expected = _expected(model_file, photos)
    threshold, top_k = _threshold_binding_one_image_and_top_k_the_other(expected)
    out = tmp_path / "drawn"
    code = main(
        ["detect", "--checkpoint", str(model_file), "--out", str(out), "--device", "cpu"]
        + ["--score", str(threshold), "--top-k", str(top_k), str(photos)]
    )
    assert code == 0
    written = json.loads((out / "detections.json").read_text())
    assert written["images"] == [
        {"id": 1, "file_name": str(photos / "a_noise.png"), "width": 120, "height": 90},
        {"id": 2, "file_name": str(photos / "b_square.png"), "width": 100, "height": 140},
    ]
    assert written["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    kept = []
    for image_id in (1, 2):
        own = [d for d in expected if d["image_id"] == image_id and d["score"] >= threshold]  # best first
        kept += own[:top_k]
    assert written["detections"] == kept
    assert sorted(sum(d["image_id"] == i for d in kept) for i in (1, 2)) == [top_k - 1, top_k]
    assert sorted(p.name for p in out.iterdir()) == ["a_noise.png", "b_square.png", "detections.json"]
    assert capsys.readouterr().out.strip() == f"{out / 'detections.json'}: {len(kept)} detections on 2 images"


def test_an_unreadable_image_is_named_and_the_others_drawn(model_file, photos, broken, tmp_path, caplog, capsys):
    """The best box of the image read is outlined in its class's colour; the unreadable one fails the command."""
    out = tmp_path / "drawn"
    image = photos / "b_square.png"
    with caplog.at_level(logging.ERROR):
        code = main(
            ["detect", "--checkpoint", str(model_file), "--out", str(out), "--top-k", "1", "--score", "0"]
            + [str(broken), str(image)]
        )
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"{broken}: cannot decode image (")
    assert capsys.readouterr().out.strip().endswith("1 detections on 1 images; 1 could not be read")
    written = json.loads((out / "detections.json").read_text())
    assert [entry["id"] for entry in written["images"]] == [2]  # its place among the images found
    (best,) = written["detections"]
    assert best["image_id"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["b_square.png", "detections.json"]
    original = np.asarray(Image.open(image))
    drawn = np.asarray(Image.open(out / "b_square.png"))
    x, y, w, h = best["bbox"]
    left, top, bottom = int(x), int(y), int(y + h)
    colour = BOX_COLOURS[best["category_id"] - 1]
    # the left edge, 2 pixels wide from x1 (which, rounded to 2 decimals in the JSON, may truncate a pixel higher)
    assert tuple(drawn[(top + bottom) // 2, left]) == colour
    changed = np.argwhere((drawn != original).any(axis=2))
    label_bottom = top + 20  # the default font's line below its margins
    assert changed[:, 0].min() >= top - 1 and changed[:, 0].max() <= max(bottom, label_bottom)
    assert changed[:, 1].min() >= left - 1
    above = max(top - 1, 0)
    assert (drawn[:above] == original[:above]).all() and len(changed) < 0.5 * original[..., 0].size


def test_draw_outlines_each_box_and_labels_it_class_and_score(monkeypatch):
    image = torch.full((3, 80, 100), GREY, dtype=torch.uint8)
    detections = {"boxes": torch.tensor([[10.0, 20.0, 50.0, 70.0]]), "scores": torch.tensor([0.8712]), "labels": [2]}
    detections["labels"] = torch.tensor(detections["labels"])
    seen = {}
    real = module.draw_bounding_boxes
    monkeypatch.setattr(module, "draw_bounding_boxes", lambda *a, **k: seen.update(labels=a[2]) or real(*a, **k))
    drawn = draw(image, detections, CLASSES)
    assert seen["labels"] == ["dog 0.87"]
    dog = list(BOX_COLOURS[1])
    assert drawn[:, 45, 10].tolist() == dog and drawn[:, 45, 11].tolist() == dog  # left edge, 2 pixels wide
    assert drawn[:, 70, 30].tolist() == dog and drawn[:, 20, 30].tolist() == dog  # bottom and top edges
    assert drawn[:, 45, 12].tolist() == [GREY] * 3  # inside, below the label
    assert drawn[:, 75, 90].tolist() == [GREY] * 3  # away from the box
    nothing = {key: values[:0] for key, values in detections.items()}
    assert torch.equal(draw(image, nothing, CLASSES), image)


def test_images_are_collected_in_order_once_and_missing_paths_named(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ["b.png", "a.JPG", "notes.txt", "sub/c.png"]:
        (folder / name).write_bytes(b"")
    files, missing = collect_images([folder / "b.png", folder, tmp_path / "gone.jpg"])
    assert files == [folder / "b.png", folder / "a.JPG"]
    assert missing == [f"{tmp_path / 'gone.jpg'}: no such file or folder"]
    with pytest.raises(ValueError, match=f"^{tmp_path / 'photos' / 'sub' / 'c.png'}: is an input image"):
        drawing_paths([folder / "sub" / "c.png"], folder / "sub")
    with pytest.raises(ValueError, match="would hold the drawing of each of .*b.png, .*b.jpg"):
        drawing_paths([folder / "b.png", tmp_path / "b.jpg"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"^{tmp_path / 'empty'}: no image files found"):
        collect_images([tmp_path / "empty"])
    assert main(["detect", "--checkpoint", "unused.pt", "--out", str(tmp_path / "o"), str(tmp_path / "empty")]) == 2
