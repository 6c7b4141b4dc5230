"""FSSD's VOC recipe as PytorchSSD trains it (data/pytorchssd_augment.py, models/fssd.py:pytorchssd_init), and the
train-time resize every original recipe draws: the order of the steps, the expand's probability and shape, the
interpolation draw, the 1% box filter and its fallback, both augmentation paths giving the same samples, the init."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare, kstest
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from scbloss import detectors
from scbloss.data.device_augment import DrawnAugmentation, ParameterDrawer, RawSample, augment_batch
from scbloss.data.iou_crop import RandomIoUCrop
from scbloss.data.pytorchssd_augment import (
    EXPAND_PROB,
    Preproc,
    PytorchSSDDraws,
    PytorchSSDExpand,
    pytorchssd_transform,
)
from scbloss.data.transforms import (
    CAFFE_INTERPOLATIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PYTORCHSSD_INTERPOLATIONS,
    RandomInterpolationResize,
    resize_pixels,
    train_transform,
)
from scbloss.recipes import recipe, training_augmentation

BOXES = torch.tensor([[10.0, 20, 200, 300], [250, 60, 490, 370], [300, 10, 330, 40]])
PIPELINES = {"ssd": train_transform, "pytorchssd": pytorchssd_transform}


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    """A VOC-sized JPEG with smooth texture."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray((rng.random((38, 50, 3)) * 255).astype(np.uint8))
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    coarse.resize((500, 375), Image.BILINEAR).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def small_jpeg(jpeg):
    """The photo at half size (250 x 188): the same texture, a quarter of the pixels to augment."""
    path = jpeg.with_name("small.jpg")
    Image.open(jpeg).resize((250, 188), Image.BILINEAR).save(path, quality=95)
    return path


def _target(boxes=BOXES, height=375, width=500):
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": torch.arange(1, len(boxes) + 1),
    }


def _interpolations_drawn(pipeline) -> list[str]:
    """Wrap the pipeline's resize steps (PytorchSSD's fallback too) to collect the interpolations they draw."""
    drawn = []
    fallback = getattr(pipeline, "fallback", None)
    steps = [*pipeline.transforms, *(fallback.transforms if fallback is not None else ())]
    for step in steps:
        if isinstance(step, RandomInterpolationResize):
            original = step.make_params

            def record(flat, original=original):
                params = original(flat)
                drawn.append(params["interpolation"])
                return params

            step.make_params = record
    return drawn


def _both_paths(jpeg, augmentation, seed, boxes=BOXES):
    """(CPU image, CPU target, the last interpolation it drew, device image, the workers' draws, their target)."""
    pixels = pil_to_tensor(Image.open(jpeg).convert("RGB"))
    height, width = pixels.shape[1:]
    pipeline = PIPELINES[augmentation](300)
    drawn_by_cpu = _interpolations_drawn(pipeline)
    torch.manual_seed(seed)
    reference, expected = pipeline(tv_tensors.Image(pixels), _target(boxes, height, width))
    torch.manual_seed(seed)
    draws, target = ParameterDrawer(300, augmentation)(height, width, _target(boxes, height, width))
    data = torch.frombuffer(bytearray(jpeg.read_bytes()), dtype=torch.uint8)
    image = augment_batch([RawSample(data, str(jpeg), height, width, draws)], 300, torch.device("cpu"))[0]
    return reference, expected, drawn_by_cpu[-1], image, draws, target


def test_the_pipeline_is_pytorchssds_order():
    """data_augment.py L196-211: crop, distort, expand (p 0.6), mirror, resize by a drawn interpolation, drop boxes
    not above 1% of a side; the fallback only resizes."""
    pipeline = pytorchssd_transform(300)
    kinds = [type(step) for step in pipeline.transforms]
    assert kinds[:6] == [
        RandomIoUCrop,
        v2.RandomPhotometricDistort,
        PytorchSSDExpand,
        v2.RandomHorizontalFlip,
        RandomInterpolationResize,
        v2.SanitizeBoundingBoxes,
    ]
    assert pipeline.transforms[2].p == EXPAND_PROB == 0.6 and pipeline.transforms[3].p == 0.5
    assert pipeline.transforms[4].interpolations == PYTORCHSSD_INTERPOLATIONS
    assert [type(step) for step in pipeline.fallback.transforms][0] is RandomInterpolationResize
    assert not any(isinstance(step, v2.RandomIoUCrop) for step in pipeline.fallback.transforms)
    ssd = train_transform(300)
    assert [step.interpolations for step in ssd.transforms if isinstance(step, RandomInterpolationResize)] == [
        CAFFE_INTERPOLATIONS
    ]
    assert not any(isinstance(step, v2.Resize) for step in ssd.transforms)  # no antialiased resize left


def test_the_original_recipe_trains_fssd_on_voc_by_pytorchssd_and_the_rest_by_ssd():
    assert training_augmentation("original", "fssd300", "voc") == "pytorchssd"
    assert training_augmentation("original", "fssd512", "voc") == "pytorchssd"
    for model, family in (("fssd300", "coco"), ("ssd300", "voc"), ("dssd321", "coco"), ("refinedet320", "voc")):
        assert training_augmentation("original", model, family) == "ssd", (model, family)
    assert training_augmentation("authors", "ssd300", "voc") == "authors"
    assert recipe("original").init_for(detectors.get("fssd300"), "voc") == "scbloss.models.fssd:pytorchssd_init"
    assert recipe("original").init_for(detectors.get("fssd300"), "coco") is None


@pytest.mark.parametrize("augmentation", ["ssd", "pytorchssd"])
def test_the_interpolation_draw_is_uniform_over_the_sources_five(augmentation):
    """5,000 draws of the resize step: a chi-square test against equal probabilities, p > 0.01."""
    step = next(s for s in PIPELINES[augmentation](300).transforms if isinstance(s, RandomInterpolationResize))
    torch.manual_seed(0)
    draws = [step.make_params([])["interpolation"] for _ in range(5000)]
    counts = [draws.count(name) for name in step.interpolations]
    assert sum(counts) == 5000 and chisquare(counts).pvalue > 0.01, counts


@pytest.mark.parametrize("interpolation", PYTORCHSSD_INTERPOLATIONS)
def test_each_interpolation_resizes_as_torch_does_without_antialiasing(interpolation):
    """LANCZOS4, which torch lacks for tensors, resizes bicubically; the result is rounded to 0-255 levels. A uint8
    image resizes bilinearly by torch's uint8 kernel (fixed-point, as OpenCV's): its float kernel's rounding changes
    with the number of threads; within one level of the float result, the same whatever the threads."""
    image = torch.randint(0, 256, (3, 75, 100), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mode = {"linear": "bilinear", "cubic": "bicubic", "lanczos4": "bicubic"}.get(interpolation, interpolation)
    options = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    for size in (40, 150):  # down and up
        expected = torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode=mode, **options)[0]
        rounded = expected.round().clamp(0, 255).to(torch.uint8)
        resized = resize_pixels(image, size, interpolation)
        assert resized.dtype == torch.uint8
        assert torch.equal(resize_pixels(image.float(), size, interpolation), rounded.float()), (interpolation, size)
        if mode != "bilinear":
            assert torch.equal(resized, rounded), (interpolation, size)
            continue
        assert (resized.int() - rounded.int()).abs().max() <= 1, size
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            assert torch.equal(resize_pixels(image, size, interpolation), resized), size
        finally:
            torch.set_num_threads(threads)
    if mode in ("bilinear", "bicubic"):
        antialiased = torch.nn.functional.interpolate(image[None].float(), size=(40, 40), mode=mode, antialias=True)
        assert (resize_pixels(image, 40, interpolation).float() - antialiased[0]).abs().max() > 20


@pytest.mark.parametrize(("augmentation", "seed"), [("ssd", 0), ("ssd", 1), *(("pytorchssd", s) for s in range(4))])
def test_both_paths_draw_the_same_and_give_nearly_the_same_image(small_jpeg, augmentation, seed):
    """The workers' draws replay the CPU pipeline's: the same interpolation, the same boxes; pixels within the
    photometric steps' uint8 rounding (60 seeds of the VOC-sized photo measured, [0, 1] units: mean |difference|
    <= 0.0078, 99th percentile <= 0.012, any pixel <= 0.024; tested with 0.01, 0.02 and 0.05)."""
    reference, expected, interpolation, image, draws, target = _both_paths(small_jpeg, augmentation, seed, BOXES / 2)
    assert isinstance(draws, DrawnAugmentation if augmentation == "ssd" else PytorchSSDDraws)
    assert draws.interpolation == interpolation
    assert torch.allclose(target["boxes"], expected["boxes"], atol=1e-4)
    assert torch.equal(target["labels"], expected["labels"])
    difference = (image - reference).abs() * torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert difference.mean() <= 0.01 and difference.quantile(0.99) <= 0.02 and difference.max() <= 0.05


def test_a_box_not_above_one_percent_of_a_side_is_dropped():
    """data_augment.py L207-211: width and height each strictly above 1% of the image's (3 pixels at 300)."""
    sanitize = pytorchssd_transform(300).transforms[5]
    boxes = torch.tensor([[10, 10, 13, 100], [10, 10, 13.001, 100], [10, 10, 100, 13], [10, 10, 100, 13.001]])
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(300, 300)),
        "labels": torch.arange(4),
    }
    _, kept = sanitize(tv_tensors.Image(torch.zeros(3, 300, 300, dtype=torch.uint8)), target)
    assert kept["labels"].tolist() == [1, 3]


@pytest.mark.parametrize("seed", [0])
def test_when_no_box_survives_the_sample_is_the_image_only_resized(jpeg, seed):
    """A 2 x 2 pixel box ends under 3 pixels whatever the draws (a crop keeps 30% of a side at least): the
    original image, resized by a fresh draw, with its box (data_augment.py L213-215); an image without boxes is
    only resized too (L180-184). The device path gives the same."""
    tiny = torch.tensor([[100.0, 100, 102, 102]])
    for boxes in (tiny, torch.zeros(0, 4)):
        reference, expected, interpolation, image, draws, target = _both_paths(jpeg, "pytorchssd", seed, boxes)
        assert draws.photometric is None and draws.crop == (0, 0, 500, 375) and not draws.flip
        assert draws.interpolation == interpolation
        scaled = boxes * torch.tensor([300 / 500, 300 / 375] * 2)
        assert torch.allclose(expected["boxes"], scaled) and torch.allclose(target["boxes"], scaled)
        pixels = pil_to_tensor(Image.open(jpeg).convert("RGB"))
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        resized = (resize_pixels(pixels, 300, interpolation).float() / 255 - mean) / std
        assert torch.allclose(reference, resized, atol=1e-5)
        assert ((image - reference).abs() * std).max() <= 2 / 255  # the JPEG decoders differ by a level or two


def test_the_expand_draws_pytorchssds_canvas():
    """3,000 expands: applied with probability 0.6 (binomial, 4 sigma); on a 30,000 x 40,000 (meta) image, where
    whole pixels blur nothing, the geometric mean of the two side factors uniform in 1-4 and the offsets uniform
    (KS tests, p > 0.01), the aspect factor (width factor / height factor) within 0.5-2 and reaching both ends
    (data_augment.py L115-147: scale uniform in 1-4, aspect ratio^2 in [max(0.5, 1/scale^2), min(2, scale^2)])."""
    step = pytorchssd_transform(300).transforms[2]
    meta = tv_tensors.Image(torch.empty(3, 375, 500, dtype=torch.uint8, device="meta"))
    torch.manual_seed(1)
    trials = 3000
    applied = sum(step(meta).shape != meta.shape for _ in range(trials))
    assert abs(applied - EXPAND_PROB * trials) < 4 * math.sqrt(trials * EXPAND_PROB * (1 - EXPAND_PROB)), applied
    height, width = 30000, 40000
    large = tv_tensors.Image(torch.empty(3, height, width, dtype=torch.uint8, device="meta"))
    scales, aspects, offsets = [], [], []
    for _ in range(trials):
        left, top, right, bottom = step.make_params([large])["padding"]
        x_factor, y_factor = (width + left + right) / width, (height + top + bottom) / height
        scales.append(math.sqrt(x_factor * y_factor))
        aspects.append(x_factor / y_factor)
        offsets.append(left / (left + right))
    assert kstest(scales, "uniform", args=(1, 3)).pvalue > 0.01
    assert kstest(offsets, "uniform").pvalue > 0.01
    assert 0.5 <= min(aspects) < 0.51 and 1.99 < max(aspects) <= 2


@pytest.fixture(scope="module")
def toy_voc(tmp_path_factory):
    from scbloss.data import load_dataset
    from scbloss.data.toy import ToyConfig, generate_toy

    root = generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=6, test_images=2, seed=4))
    return load_dataset("toy_voc", root, "trainval")


@pytest.mark.slow
def test_the_loaders_two_datasets_give_the_same_pytorchssd_samples(toy_voc):
    """Through the loader (training_transform / parameter_drawer "pytorchssd"): for each (seed, epoch, index) the
    same boxes and labels, and pixels within the photometric rounding and the JPEG decoders."""
    from scbloss.data.loader import DetectionDataset, EncodedDetectionDataset, training_transform
    from scbloss.data.transforms import normalization

    normalize = normalization("caffe")
    cpu = DetectionDataset(toy_voc, training_transform("pytorchssd", 300, normalize), train=True, seed=3)
    device = EncodedDetectionDataset(toy_voc, 300, seed=3, augmentation="pytorchssd")
    for key in [(index, index % 2) for index in range(len(toy_voc.records))]:
        image, expected = cpu[key]
        sample, target = device[key]
        assert isinstance(sample.drawn, PytorchSSDDraws)
        assert torch.allclose(target["boxes"], expected["boxes"], atol=1e-6)
        assert torch.equal(target["labels"], expected["labels"])
        pixels = augment_batch([sample], 300, torch.device("cpu"), normalize=normalize)[0]
        difference = (pixels - image).abs()  # 0-255 levels (std 1 of 255)
        assert difference.mean() <= 3.0 and difference.quantile(0.99) <= 8.0, (key, difference.max())


def test_pytorchssd_preproc_is_a_compose_the_drawer_can_replay():
    """Every step of both branches is one the device path knows (ParameterDrawer refuses any other)."""
    drawer = ParameterDrawer(300, "pytorchssd")
    assert isinstance(drawer.transform, Preproc)
    with pytest.raises(ValueError, match="no device augmentation 'mmdet'"):
        ParameterDrawer(300, "mmdet")


def test_fssd_on_voc_is_initialised_as_pytorchssd_does():
    """train_test.py L149-174 on our modules: kaiming normal fan_out for the fusion's 1x1 and the pyramid's
    convolutions, PyTorch's default uniform for conv7 and the heads, every bias 0, BatchNorm 1 and 0. On COCO the
    network keeps its Xavier init (Caffe FSSD's)."""
    from scbloss.models import build_model

    torch.manual_seed(0)
    model = build_model("fssd300", 21, width=0.25, dataset="voc")
    with torch.no_grad():
        for conv in [*model.reduce, *(level[0] for level in model.pyramid)]:
            fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
            assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
            assert conv.bias is None or not conv.bias.any()
        for conv in [m for m in (*model.conv7, *model.head.loc, *model.head.conf) if isinstance(m, torch.nn.Conv2d)]:
            bound = 1 / math.sqrt(conv.weight[0].numel())  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), ...)
            assert conv.weight.abs().max().item() <= bound and conv.weight.std().item() == pytest.approx(
                bound / math.sqrt(3), rel=0.1
            )
            assert not conv.bias.any()
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and all((n.weight == 1).all() and not n.bias.any() for n in norms)
        coco = build_model("fssd300", 81, width=0.25, dataset="coco")
        conv = coco.head.loc[0]
        xavier = math.sqrt(6 / (conv.weight.shape[1] * 9 + conv.weight.shape[0] * 9))
        assert conv.weight.std().item() == pytest.approx(xavier / math.sqrt(3), rel=0.1)
