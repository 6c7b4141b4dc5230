"""Input pipeline and training-rate measurements shared by benchmarks/run.py (CPU) and benchmarks/gpu.py."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from scbloss.data import load_dataset
from scbloss.data.device_augment import augment_batch
from scbloss.data.loader import DetectionDataset, EncodedDetectionDataset, IterationBatchSampler, make_loader
from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.data.transforms import train_transform
from scbloss.detection.criterion import total_loss
from scbloss.engine.precision import resolve
from scbloss.models import build_criterion, build_model

VOC_SIZED = {"min_side": 375, "max_side": 500}  # VOC's JPEGs are 375-500 px a side


def voc_sized_images(folder: Path, images: int) -> Path:
    """A toy dataset (VOC layout) whose JPEGs have VOC's sizes, generated once into ``folder``."""
    if not (folder / "toy.json").exists():
        generate_toy(folder, ToyConfig(train_images=images, test_images=2, seed=0, **VOC_SIZED))
    return folder


def worker_seconds_per_image(root: Path, size: int, images: int) -> dict[str, float]:
    """CPU time per training image in one process: the v2 pipeline (decode + augment) against the device path's
    worker half (read the bytes + draw the parameters and boxes)."""
    data = load_dataset("toy_voc", root, "trainval")
    datasets = {
        "v2": DetectionDataset(data, train_transform(size), train=True, seed=0),
        "device": EncodedDetectionDataset(data, size, seed=0),
    }
    seconds = {}
    for name, dataset in datasets.items():
        dataset[(0, 0)]  # warm-up (imports, caches)
        start = time.process_time()
        for index in range(images):
            dataset[(index % len(dataset), index // len(dataset))]
        seconds[name] = (time.process_time() - start) / images
    return seconds


def input_images_per_s(
    root: Path, size: int, batch: int, batches: int, workers: int, device: torch.device, on_device: bool
) -> float:
    """Images per second the training input pipeline delivers to ``device`` (CPU path or device path)."""
    data = load_dataset("toy_voc", root, "trainval")
    dataset = EncodedDetectionDataset(data, size) if on_device else DetectionDataset(data, train_transform(size), True)
    loader = make_loader(dataset, IterationBatchSampler(len(dataset), batch, 0, batches + 2), num_workers=workers)
    iterator, start, done = iter(loader), None, 0
    for step, (images, _) in enumerate(iterator):
        images = augment_batch(images, size, device) if on_device else images.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step == 1:  # the first batches pay for starting the workers
            start, done = time.perf_counter(), 0
        elif start is not None:
            done += batch
    return done / (time.perf_counter() - start)


def model_images_per_s(
    name: str,
    width: float,
    batch: int,
    steps: int,
    device: torch.device,
    precision: str = "auto",
    compile: str = "auto",
) -> tuple[float, str]:
    """A training step on a fixed synthetic batch (forward, loss, backward, SGD) with the run's precision and
    compilation: images per second, and the precision used."""
    settings = resolve(precision, compile, device)
    model = build_model(name, 21, width, "coco", batch_norm=width < 1).to(device, memory_format=settings.memory_format)
    criterion = build_criterion(name, "scb")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.scale_loss)
    forward = torch.compile(model) if settings.compile else model
    size = model.layout.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device, memory_format=settings.memory_format)
    targets = [
        {
            "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.6, 0.55, 0.7, 0.62]], device=device),
            "labels": torch.tensor([3, 7], device=device),
        }
        for _ in range(batch)
    ]

    def step():
        with torch.autocast(device.type, dtype=settings.autocast_dtype, enabled=settings.autocast_dtype is not None):
            outputs = forward(images)
        loss = total_loss(criterion(outputs, model, targets))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    # compilation and autotuning happen in the first steps
    seconds = _seconds_per_call(step, 3 if settings.compile else 1, steps, device)
    return batch / seconds, settings.name


def _seconds_per_call(call, warmup: int, repeats: int, device: torch.device) -> float:
    """Mean wall time of ``call()`` after ``warmup`` calls, waiting for the device's queued work."""
    for _ in range(warmup):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench_worker_cpu_time(quick: bool) -> dict[str, float]:
    """CPU time per training image (SSD300, VOC-sized JPEGs): the device path's worker half against the v2 pipeline."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = voc_sized_images(Path(folder) / "voc-sized", 16)
        seconds = worker_seconds_per_image(root, 300, 32 if quick else 128)
    return {
        "ratio": seconds["device"] / seconds["v2"],
        "target": 0.2,
        "device_s": seconds["device"],
        "v2_s": seconds["v2"],
    }


def pixel_half_images_per_s(root: Path, size: int, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    """The device's pixel half (decode + photometric + zoom-out/crop/resize + flip + normalize) on one batch of the
    workers' samples: ours (:func:`augment_batch`) against the same steps written with kornia, where installed
    (``kornia.augmentation`` for the photometric steps and flip, ``crop_and_resize`` for the field). Images/s."""
    from scbloss.data.device_augment import _decode
    from scbloss.data.transforms import fill_colour, normalization

    data = load_dataset("toy_voc", root, "trainval")
    dataset = EncodedDetectionDataset(data, size)
    samples = [dataset[(index % len(dataset), index // len(dataset))][0] for index in range(batch)]
    candidates = {"ours (augment_batch)": lambda: augment_batch(samples, size, device)}
    try:
        import kornia
    except ImportError:
        kornia = None
    if kornia is not None:
        K = kornia.augmentation
        mean, std = (torch.tensor(v, device=device) for v in normalization("imagenet"))
        fill = torch.tensor(fill_colour(normalization("imagenet")), device=device).view(1, 3, 1, 1) / 255
        # RandomPhotometricDistort's ranges, each step with p = 0.5 (kornia draws its own parameters per sample)
        distort = K.AugmentationSequential(
            K.RandomBrightness((0.875, 1.125), p=0.5),
            K.RandomContrast((0.5, 1.5), p=0.5),
            K.RandomSaturation((0.5, 1.5), p=0.5),
            K.RandomHue((-0.05, 0.05), p=0.5),
            K.RandomChannelShuffle(p=0.5),
        ).to(device)
        flip = K.RandomHorizontalFlip(p=0.5).to(device)
        fields = torch.tensor([s.drawn.field for s in samples], device=device)
        corners = torch.stack(
            [fields[:, [0, 1]], fields[:, [2, 1]], fields[:, [2, 3]], fields[:, [0, 3]]], dim=1
        )  # kornia's box format: the four corners, clockwise from top-left

        def with_kornia():
            images = _decode(samples, device)
            height, width = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
            padded = torch.stack(
                [torch.nn.functional.pad(i, (0, width - i.shape[2], 0, height - i.shape[1])) for i in images]
            )
            pixels = distort(padded.float() / 255) - fill
            out = kornia.geometry.transform.crop_and_resize(pixels, corners, (size, size), padding_mode="zeros")
            return kornia.enhance.normalize(flip(out) + fill, mean, std)

        candidates[f"kornia {kornia.__version__}"] = with_kornia
    # one warm-up call: kernels, nvJPEG handles
    return {name: batch / _seconds_per_call(run, 1, repeats, device) for name, run in candidates.items()}


def photometric_images_per_s(batch: int, repeats: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """The photometric distortion of a batch of VOC-sized images (375-500 px a side, float [0, 1]), every step drawn
    for every image: torchvision's kernels image by image (the reference), ours batched
    (:func:`photometric_batch`), and kornia's batched ops with the same injected factors, where installed.
    {name: (images/s, largest |difference| to the reference over each image's own pixels)}. kornia's contrast
    averages over the padded tensor and its hue works in its own HSV (radians), hence its difference."""
    from scbloss.data.device_augment import photometric
    from scbloss.data.photometric_batch import pad_batch, photometric_batch

    generator = torch.Generator().manual_seed(0)
    sizes = [(375 + (i * 37) % 126, 500 - (i * 53) % 126) for i in range(batch)]
    images = [torch.rand(3, h, w, generator=generator).to(device) for h, w in sizes]
    params = [
        dict(
            brightness_factor=0.875 + 0.25 * (i % 5) / 4,
            contrast_factor=0.5 + (i % 7) / 6,
            contrast_before=i % 2 == 0,
            saturation_factor=0.5 + (i % 3) / 2,
            hue_factor=-0.05 + 0.1 * (i % 4) / 3,
            channel_permutation=[[0, 1, 2], [2, 0, 1], [1, 2, 0]][i % 3],
        )
        for i in range(batch)
    ]
    padded, mask = pad_batch(images)
    candidates = {
        "torchvision, image by image": lambda: [photometric(image, p) for image, p in zip(images, params)],
        "ours, batched (photometric_batch)": lambda: photometric_batch(padded, mask, params),
    }
    try:
        import kornia
    except ImportError:
        kornia = None
    if kornia is not None:
        E = kornia.enhance

        def factor(key, default=1.0, when=None):
            values = [p[key] if when is None or when(p) else default for p in params]
            return torch.tensor(values, device=device)

        order = torch.tensor([p["channel_permutation"] for p in params], device=device).view(-1, 3, 1, 1)

        def with_kornia():
            x = E.adjust_brightness_accumulative(padded, factor("brightness_factor"))
            x = E.adjust_contrast_with_mean_subtraction(
                x, factor("contrast_factor", 1.0, lambda p: p["contrast_before"])
            )
            x = E.adjust_saturation_with_gray_subtraction(x, factor("saturation_factor"))
            x = E.adjust_hue(x, factor("hue_factor") * 2 * torch.pi)
            x = E.adjust_contrast_with_mean_subtraction(
                x, factor("contrast_factor", 1.0, lambda p: not p["contrast_before"])
            )
            return x.gather(1, order.expand_as(x))

        candidates[f"kornia {kornia.__version__}, batched, injected factors"] = with_kornia
    reference = candidates["torchvision, image by image"]()
    results = {}
    for name, run in candidates.items():
        out = run()
        difference = max(
            float((out[i][:, : image.shape[-2], : image.shape[-1]] - reference[i]).abs().max())
            for i, image in enumerate(images)
        )
        results[name] = (batch / _seconds_per_call(run, 1, repeats, device), difference)
    return results
