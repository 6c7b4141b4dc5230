"""The device augmentation path (decode + photometric + zoom-out/crop + the drawn resize on the training device)
against torchvision's v2 pipeline, on CPU tensors: same draws, same boxes, nearly the same pixels, same
distributions."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from scbloss.data.device_augment import ParameterDrawer, RawSample, augment_batch
from scbloss.data.iou_crop import iou_crop_params
from scbloss.data.loader import DetectionDataset, EncodedDetectionDataset, collate
from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.data.transforms import IMAGENET_STD, train_transform

BOXES = torch.tensor([[10.0, 20, 200, 300], [250, 60, 490, 370], [300, 10, 330, 40]])


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    """A VOC-sized JPEG with smooth texture (a photo's spectrum more than noise's)."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray((rng.random((38, 50, 3)) * 255).astype(np.uint8))
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    coarse.resize((500, 375), Image.BILINEAR).save(path, quality=95)
    return path


def _target(height=375, width=500, boxes=BOXES):
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": torch.arange(1, len(boxes) + 1),
    }


@pytest.mark.parametrize("seed", range(12))
def test_same_draws_give_the_same_boxes_and_nearly_the_same_image(jpeg, seed):
    """Tolerances, in [0, 1] pixel units: mean |difference| <= 0.01, 99th percentile <= 0.02, any pixel <= 0.05 (60
    seeds measured: worst 0.0078, 0.012, 0.024: both paths resize by the same drawn interpolation and round to 0-255
    levels, the CPU pipeline rounds after each photometric step too); boxes within 1e-4 (they are equal)."""
    pixels = pil_to_tensor(Image.open(jpeg).convert("RGB"))
    torch.manual_seed(seed)
    reference, expected = train_transform(300)(tv_tensors.Image(pixels), _target())
    torch.manual_seed(seed)
    drawn, target = ParameterDrawer(300)(375, 500, _target())
    data = torch.frombuffer(bytearray(jpeg.read_bytes()), dtype=torch.uint8)
    image = augment_batch([RawSample(data, str(jpeg), 375, 500, drawn)], 300, torch.device("cpu"))[0]
    assert torch.allclose(target["boxes"], expected["boxes"], atol=1e-4) and torch.equal(
        target["labels"], expected["labels"]
    )
    difference = (image - reference).abs() * torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert difference.mean() <= 0.01 and difference.quantile(0.99) <= 0.02 and difference.max() <= 0.05


@pytest.mark.slow
def test_the_workers_iou_crop_draws_torchvisions_crop_to_the_bit():
    """1,000 random images and boxes (integer and fractional corners): the same crop, the same kept boxes, and the
    random-number generator left in the same state as torchvision's RandomIoUCrop.make_params."""
    step, rng = v2.RandomIoUCrop(), np.random.default_rng(0)
    for seed in range(1000):
        height, width, count = int(rng.integers(50, 900)), int(rng.integers(50, 900)), int(rng.integers(1, 8))
        corners = rng.uniform(0, 1, (count, 4)) * [width, height, width, height]
        boxes = np.concatenate(
            [corners[:, :2].clip(max=corners[:, 2:]), corners[:, 2:].clip(min=corners[:, :2]) + 1], 1
        )
        inputs = [
            tv_tensors.Image(torch.empty(3, height, width, dtype=torch.uint8, device="meta")),
            tv_tensors.BoundingBoxes(
                torch.tensor(boxes.round() if seed % 2 else boxes, dtype=torch.float32),
                format="XYXY",
                canvas_size=(height, width),
            ),
        ]
        torch.manual_seed(seed)
        theirs, their_next = step.make_params(inputs), torch.rand(1)
        torch.manual_seed(seed)
        ours, our_next = iou_crop_params(step, inputs), torch.rand(1)
        assert ours.keys() == theirs.keys() and torch.equal(our_next, their_next), seed
        for key, value in theirs.items():
            assert torch.equal(ours[key], value) if torch.is_tensor(value) else ours[key] == value, (seed, key)


def _recorded(transform, names=("RandomZoomOut", "RandomIoUCrop")):
    """Wrap the geometric steps' make_params to collect what they draw."""
    drawn = {}
    for step in transform.transforms:
        if type(step).__name__ in names:
            original = step.make_params

            def record(flat, original=original, name=type(step).__name__):  # noqa: B008
                drawn[name] = original(flat)
                return drawn[name]

            step.make_params = record
    return drawn


def _geometry(drawn, height, width):
    """Zoom factor, crop scale (crop area / canvas area) and crop aspect ratio of one draw."""
    zoom, canvas = 1.0, (width, height)
    if "RandomZoomOut" in drawn:
        left, top, right, bottom = drawn["RandomZoomOut"]["padding"]
        canvas = (width + left + right, height + top + bottom)
        zoom = canvas[0] / width
    crop = drawn.get("RandomIoUCrop") or {"width": canvas[0], "height": canvas[1]}
    return zoom, crop["width"] * crop["height"] / (canvas[0] * canvas[1]), crop["width"] / crop["height"]


KS_HEIGHT, KS_WIDTH = 48, 64
KS_BOXES = torch.tensor([[2.0, 3, 50, 44], [20, 5, 62, 40], [10, 10, 30, 30]])


def _cpu_draws(seeds):
    """Zoom, crop scale, crop aspect and kept boxes of torchvision's pipeline on real pixels, one row per seed."""
    torch.set_num_threads(1)  # two of these processes share two cores
    reference = train_transform(64)
    recorded = _recorded(reference)
    image = tv_tensors.Image(torch.randint(0, 256, (3, KS_HEIGHT, KS_WIDTH), dtype=torch.uint8))
    rows = []
    for seed in seeds:
        recorded.clear()
        torch.manual_seed(seed)
        _, target = reference(image, _target(KS_HEIGHT, KS_WIDTH, KS_BOXES))
        rows.append((*_geometry(dict(recorded), KS_HEIGHT, KS_WIDTH), len(target["boxes"])))
    return rows


def _device_draws(seeds):
    """The same measures of the workers' draws on a meta image."""
    torch.set_num_threads(1)
    drawer = ParameterDrawer(64)
    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        _, target = drawer(KS_HEIGHT, KS_WIDTH, _target(KS_HEIGHT, KS_WIDTH, KS_BOXES))
        rows.append((*_geometry(drawer.last_draws, KS_HEIGHT, KS_WIDTH), len(target["boxes"])))
    return rows


@pytest.mark.slow
def test_over_2500_draws_the_distributions_agree_with_torchvisions():
    """Independent draws (different seeds) of the CPU pipeline on real pixels and of the workers' draws on a meta
    image: two-sample KS tests on zoom factor, crop scale, crop aspect ratio and kept-box count, p > 0.01.
    (Two processes share the 5,000 draws.)"""
    from concurrent.futures import ProcessPoolExecutor

    draws = 2500
    with ProcessPoolExecutor(max_workers=2) as pool:
        cpu = pool.submit(_cpu_draws, range(draws))
        device = pool.submit(_device_draws, range(draws, 2 * draws))
        cpu, device = np.array(cpu.result()), np.array(device.result())
    assert len(cpu) == len(device) == draws
    for column, name in enumerate(("zoom factor", "crop scale", "aspect ratio", "kept boxes")):
        assert ks_2samp(cpu[:, column], device[:, column], method="asymp").pvalue > 0.01, name
    assert 0.3 < (cpu[:, 0] > 1).mean() < 0.7  # zoom-out drawn about half the time: the measures are live


def _dataset(jpeg, count=6):
    records = [
        ImageRecord(i, jpeg, 500, 375, BOXES.numpy(), np.array([1, 2, 3]), np.zeros(3, bool), np.zeros(3, bool))
        for i in range(count)
    ]
    return DetectionSet(records, ["a", "b", "c"], "voc")


def test_a_sample_depends_only_on_seed_epoch_and_index(jpeg):
    data = _dataset(jpeg)
    encoded, pixels = EncodedDetectionDataset(data, 300, seed=7), DetectionDataset(data, train_transform(300), True, 7)
    first, again = encoded[(3, 2)], EncodedDetectionDataset(data, 300, seed=7)[(3, 2)]
    assert first[0].drawn == again[0].drawn and torch.equal(first[1]["boxes"], again[1]["boxes"])
    assert torch.allclose(first[1]["boxes"], pixels[(3, 2)][1]["boxes"], atol=1e-6)  # = the CPU path's boxes
    assert encoded[(3, 1)][0].drawn != first[0].drawn  # another epoch, other draws
    samples, targets = collate([encoded[(i, 0)] for i in range(4)])
    batch = augment_batch(samples, 300, torch.device("cpu"), memory_format=torch.channels_last)
    assert batch.shape == (4, 3, 300, 300) and batch.is_contiguous(memory_format=torch.channels_last)


def test_a_corrupt_or_misdeclared_image_is_named(tmp_path, jpeg):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg.read_bytes()[:100])
    drawn, _ = ParameterDrawer(300)(375, 500, _target())
    sample = RawSample(
        torch.frombuffer(bytearray(broken.read_bytes()), dtype=torch.uint8), str(broken), 375, 500, drawn
    )
    with pytest.raises(ValueError, match="broken.jpg: cannot decode image"):
        augment_batch([sample], 300, torch.device("cpu"))
    wrong = RawSample(torch.frombuffer(bytearray(jpeg.read_bytes()), dtype=torch.uint8), str(jpeg), 300, 500, drawn)
    with pytest.raises(ValueError, match="photo.jpg: image is 500x375, annotation says 500x300"):
        augment_batch([wrong], 300, torch.device("cpu"))


def test_a_pipeline_step_the_device_cannot_apply_is_refused(monkeypatch):
    from scbloss.data import device_augment

    def with_blur(size):
        pipeline = train_transform(size)
        pipeline.transforms.insert(1, v2.GaussianBlur(3))
        return pipeline

    monkeypatch.setattr(device_augment, "train_transform", with_blur)
    with pytest.raises(ValueError, match="GaussianBlur"):
        ParameterDrawer(300)


@pytest.fixture(scope="module")
def toy_voc(tmp_path_factory):
    from scbloss.data import load_dataset
    from scbloss.data.toy import ToyConfig, generate_toy

    root = generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=6, test_images=2, seed=4))
    return load_dataset("toy_voc", root, "trainval")


@pytest.mark.parametrize("size", [300, 512])
def test_the_authors_augmentation_gives_both_paths_the_same_sample(toy_voc, size):
    """recipe: authors through the loader's two datasets: for each (seed, epoch, index) the CPU pipeline and the
    workers' draws applied on the device give the same boxes (mmdetection v1's convention, normalized) and the
    same pixels up to the JPEG decoders (PIL's and torchvision's): equal to the bit on this machine's toy JPEGs,
    allowed 1 level of 255 on average for a decoder built otherwise."""
    from scbloss.data.authors_augment import AuthorsDraws
    from scbloss.data.loader import DetectionDataset, EncodedDetectionDataset, training_transform
    from scbloss.data.transforms import normalization

    normalize = normalization("mmdet_caffe")
    cpu = DetectionDataset(
        toy_voc, training_transform("authors", size, normalize), train=True, seed=3, augmentation="authors"
    )
    device = EncodedDetectionDataset(toy_voc, size, seed=3, augmentation="authors")
    for key in [(index, epoch) for index in range(len(toy_voc.records)) for epoch in (0, 1)]:
        image, expected = cpu[key]
        sample, target = device[key]
        assert isinstance(sample.drawn, AuthorsDraws)
        assert torch.equal(target["boxes"], expected["boxes"]) and torch.equal(target["labels"], expected["labels"])
        pixels = augment_batch([sample], size, torch.device("cpu"), normalize=normalize)[0]
        difference = (pixels - image).abs()  # 0-255 levels: std 1 of 255
        assert difference.mean() <= 1.0 and difference.quantile(0.99) <= 8.0, (key, difference.max())


def test_the_authors_loss_reads_the_very_pixel_boxes_the_augmentation_made(toy_voc):
    """The loader normalizes the authors' boxes in float64, so the loss frame gets back every float32 pixel
    coordinate exactly (+1 on the inclusive edge); through float32 about one random coordinate in ten comes back an
    ulp off."""
    from scbloss import detectors
    from scbloss.data.authors_augment import AuthorsTrainTransform
    from scbloss.data.loader import DetectionDataset, sample_seed
    from scbloss.detection.priors import targets_for_loss
    from scbloss.recipes import recipe

    layout = recipe("authors").layout(detectors.get("ssd300").layout("voc"))
    transform = AuthorsTrainTransform(300)
    dataset = DetectionDataset(toy_voc, transform, train=True, seed=5, augmentation="authors")
    for index in range(len(toy_voc.records)):
        _, target = dataset[(index, 0)]
        record = toy_voc.records[index]
        objects = dataset._objects(record, record.counted(), (record.height, record.width))
        torch.manual_seed(sample_seed(5, 0, index))
        _, expected = transform(
            tv_tensors.Image(torch.zeros(3, record.height, record.width, dtype=torch.uint8)), objects
        )
        pixels = expected["boxes"].as_subclass(torch.Tensor) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        assert torch.equal(targets_for_loss(layout, [target])[0]["boxes"], pixels)
