import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from scbloss.data.loader import DetectionDataset, IterationBatchSampler, make_loader
from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

BOX = (40, 30, 110, 70)  # x1, y1, x2 (exclusive), y2 (exclusive) of a white block on black


def _sample():
    image = torch.zeros(3, 100, 160, dtype=torch.uint8)
    x1, y1, x2, y2 = BOX
    image[:, y1:y2, x1:x2] = 255
    boxes = tv_tensors.BoundingBoxes([list(BOX)], format="XYXY", canvas_size=(100, 160))
    return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor([1])}


def _white_extent(image: torch.Tensor) -> list[float]:
    """Tight xyxy (pixel edges) of the pixels brighter than 0.75 in every channel."""
    ys, xs = torch.nonzero((image > 0.75).all(dim=0), as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


GEOMETRIC = {
    "zoom_out": v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}, side_range=(1.0, 4.0), p=1.0),
    "iou_crop": v2.RandomIoUCrop(),
    "resize": v2.Resize((300, 300), antialias=True),
    "flip": v2.RandomHorizontalFlip(p=1.0),
}


@pytest.mark.parametrize("name", [*GEOMETRIC, "whole_pipeline"])
@pytest.mark.parametrize("seed", range(6))
def test_boxes_follow_the_pixels(name, seed):
    torch.manual_seed(seed)
    if name == "whole_pipeline":  # every geometric step of train_transform; photometric steps change colours only
        steps = [
            t for t in train_transform(300).transforms if not isinstance(t, (v2.RandomPhotometricDistort, v2.Normalize))
        ]
        transform = v2.Compose(steps)
    else:
        transform = v2.Compose([GEOMETRIC[name], v2.ToDtype(torch.float32, scale=True)])
    image, target = transform(*_sample())
    if len(target["boxes"]) == 0:
        pytest.skip("the crop left the object out")  # SanitizeBoundingBoxes dropped it together with its label
    box = target["boxes"][0].tolist()
    # The drawn resize moves an edge by up to about one source pixel (nearest's half-pixel shift, cubic's
    # overshoot, the antialiased resize's blur), which the crop may upscale by up to 3.4x.
    tolerance = 3.5 if name == "whole_pipeline" else 1.5
    assert _white_extent(image) == pytest.approx(box, abs=tolerance)


def test_normalization_and_test_pipeline():
    image, target = eval_transform(300)(*_sample())
    assert image.shape == (3, 300, 300)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    restored = image * std + mean
    assert restored[:, 0, 0].tolist() == pytest.approx([0, 0, 0], abs=1e-5)
    assert _white_extent(restored) == pytest.approx(target["boxes"][0].tolist(), abs=1.5)


def test_the_test_resize_is_bilinear_without_antialiasing_in_float():
    """torch.nn.functional.interpolate's bilinear (half-pixel centres, no antialias) of the normalized image."""
    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    resized = eval_transform(300)(tv_tensors.Image(image))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    normalized = (image.float() / 255 - mean) / std
    reference = torch.nn.functional.interpolate(
        normalized[None], size=(300, 300), mode="bilinear", align_corners=False, antialias=False
    )[0]
    assert torch.allclose(resized, reference, atol=1e-5)
    antialiased = torch.nn.functional.interpolate(normalized[None], size=(300, 300), mode="bilinear", antialias=True)
    assert (resized - antialiased[0]).abs().max() > 0.1  # the difference the change makes on a noisy image


def _records(tmp_path, count=6):
    from PIL import Image

    records = []
    for i in range(count):
        Image.fromarray(np.full((50, 60, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
        records.append(
            ImageRecord(
                i,
                tmp_path / f"{i}.jpg",
                60,
                50,
                np.array([[5, 5, 30, 40], [1, 1, 4, 4]], np.float32),
                np.array([1, 2]),
                np.array([False, True]),
                np.array([False, False]),
            )
        )
    return DetectionSet(records, ["a", "b"], "voc")


def test_dataset_is_deterministic_per_seed_epoch_index(tmp_path):
    data = _records(tmp_path)
    dataset = DetectionDataset(data, train_transform(300), train=True, seed=5)
    first, again, other_epoch = dataset[(2, 0)], dataset[(2, 0)], dataset[(2, 1)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
    assert not torch.equal(first[0], other_epoch[0])
    assert first[1]["labels"].tolist() in ([1], [])  # the difficult object is left out of training
    evaluation = DetectionDataset(data, eval_transform(300), train=False)[2][1]
    assert evaluation["labels"].tolist() == [1, 2] and evaluation["orig_size"] == (50, 60)
    assert evaluation["boxes"][0].tolist() == pytest.approx([5 / 60, 5 / 50, 30 / 60, 40 / 50])


def test_loader_batches_are_independent_of_workers_and_resume_point(tmp_path):
    dataset = DetectionDataset(_records(tmp_path), train_transform(300), train=True, seed=1)
    full = list(make_loader(dataset, IterationBatchSampler(6, 2, seed=1, stop=5), num_workers=2))
    resumed = list(make_loader(dataset, IterationBatchSampler(6, 2, seed=1, stop=5, start=3), num_workers=0))
    assert len(full) == 5 and len(resumed) == 2
    for (a, ta), (b, tb) in zip(full[3:], resumed):
        assert torch.equal(a, b) and all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb))
    with pytest.raises(ValueError, match="batch size 8 exceeds the 6 training images"):
        IterationBatchSampler(6, 8, seed=1, stop=2)


def test_the_training_pipeline_crops_as_torchvision_does():
    """train_transform's min-IoU crop (data/iou_crop.py, its trial loop in NumPy) gives torchvision's images and
    boxes, to the bit, for the same random state."""
    ours = train_transform(300)
    theirs = v2.Compose([v2.RandomIoUCrop() if type(t).__name__ == "RandomIoUCrop" else t for t in ours.transforms])
    assert type(ours.transforms[2]) is not v2.RandomIoUCrop and type(theirs.transforms[2]) is v2.RandomIoUCrop
    for seed in range(40):
        (image, target), (their_image, their_target) = (
            (torch.manual_seed(seed), pipeline(*_sample()))[1] for pipeline in (ours, theirs)
        )
        assert torch.equal(image, their_image) and torch.equal(target["boxes"], their_target["boxes"])
