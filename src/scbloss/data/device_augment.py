"""The training augmentations in two halves: parameters in the loader's workers, pixels on the training device.

The workers only read each image's file bytes and draw the augmentation's random parameters, by running the
very transforms of the CPU pipeline (:func:`~scbloss.data.transforms.train_transform`, SSD's order; or
:func:`~scbloss.data.pytorchssd_augment.pytorchssd_transform`, PytorchSSD's) on a shape-only ("meta") image: they
consume the random-number generator exactly as the CPU pipeline does and transform the real boxes, so for a given
(seed, epoch, index) both paths draw the same parameters and produce the same boxes (the min-IoU crop's trial loop
is torchvision's arithmetic redone in NumPy, :mod:`.iou_crop`, as in the CPU pipeline).
The device then decodes the batch (``torchvision.io.decode_jpeg``, on the GPU when training there), applies the
photometric distortion to the whole batch at once with torchvision's arithmetic (:mod:`.photometric_batch`; to
the whole image in SSD's order, to the crop in PytorchSSD's) and, image by image, cuts the drawn field out of the
image with the fill colour where it reaches beyond (zoom-out / expand), and resizes it by the drawn interpolation
with the CPU pipeline's own function (:func:`~scbloss.data.transforms.resize_pixels`), flipping after the resize
(SSD) or before it (PytorchSSD).

Differences to the CPU pipeline (listed in docs/conventions.md): the device works in float where the CPU pipeline
rounds to uint8 after each photometric step (both round the resized image to 0-255 levels, as OpenCV does);
libjpeg-turbo (or nvJPEG) decodes instead of PIL.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .authors_augment import AuthorsDraws, apply_authors_batch
from .image_cache import ImageCache
from .photometric_batch import pad_batch, photometric_batch
from .pytorchssd_augment import PytorchSSDDraws, pytorchssd_transform
from .records import DatasetError, size_mismatch, undecodable
from .transforms import RandomInterpolationResize, fill_colour, normalization, resize_pixels, train_transform

_JPEG_MAGIC = b"\xff\xd8"


@dataclass
class DrawnAugmentation:
    """One sample's random draws: what the device applies to its pixels."""

    photometric: dict  # RandomPhotometricDistort's parameters (factors are None where the step is not applied)
    field: tuple[int, int, int, int]  # the output's field (x0, y0, x1, y1) in original image pixels, exclusive edges
    flip: bool
    interpolation: str = "linear"  # the resize's, a name of scbloss.data.transforms.TORCH_INTERPOLATION


@dataclass
class RawSample:
    """What a worker hands over: the file's bytes, its declared size and the draws."""

    data: torch.Tensor  # uint8 [n], the encoded file
    file: str
    height: int
    width: int
    drawn: DrawnAugmentation | PytorchSSDDraws | AuthorsDraws
    index: int = -1  # the record's, where the pixels come from the decoded-image cache (``data`` is then empty)


def read_sample(record, drawn, index: int = -1) -> RawSample:
    """A record's file bytes with its draws; an unreadable file is a DatasetError naming it."""
    try:
        data = torch.frombuffer(bytearray(Path(record.file).read_bytes()), dtype=torch.uint8)
    except OSError as error:
        raise DatasetError(f"{record.file}: cannot read image ({error.strerror or error})") from error
    return RawSample(data, str(record.file), record.height, record.width, drawn, index)


class ParameterDrawer:
    """Runs a recipe's CPU pipeline (``augmentation`` "ssd": :func:`train_transform`, "pytorchssd":
    :func:`pytorchssd_transform`) at ``size`` on a meta image (shape only) and real boxes, recording what it drew."""

    RANDOM = (
        v2.RandomPhotometricDistort,
        v2.RandomZoomOut,
        v2.RandomIoUCrop,
        v2.RandomHorizontalFlip,
        RandomInterpolationResize,
    )
    FIXED = (v2.SanitizeBoundingBoxes, v2.ToDtype, v2.Normalize)  # the device's normalize

    def __init__(self, size: int, augmentation: str = "ssd") -> None:
        pipelines = {"ssd": train_transform, "pytorchssd": pytorchssd_transform}
        if augmentation not in pipelines:
            raise ValueError(f"no device augmentation {augmentation!r}; choose one of {', '.join(pipelines)}")
        self.augmentation = augmentation
        self.transform = pipelines[augmentation](size)
        self._drawn: dict[str, dict] = {}
        fallback = getattr(self.transform, "fallback", None)
        for step in [*self.transform.transforms, *(fallback.transforms if fallback is not None else ())]:
            if not isinstance(step, self.RANDOM + self.FIXED):
                raise ValueError(
                    f"the device augmentation cannot apply {type(step).__name__}: add it to data/device_augment.py "
                    "or train with augment_on: cpu"
                )
            if isinstance(step, self.RANDOM):
                name = next(kind.__name__ for kind in self.RANDOM if isinstance(step, kind))  # PytorchSSDExpand too
                step.make_params = self._recording(name, step.make_params)
            if isinstance(step, v2.RandomPhotometricDistort):  # its pixels are the device's job
                step.transform = lambda inpt, params: inpt

    def _recording(self, name, make_params):
        def record(flat_inputs):
            params = make_params(flat_inputs)
            self._drawn[name] = params
            return params

        return record

    @property
    def last_draws(self) -> dict[str, dict]:
        """The parameters each random step drew in the last call, by step name (absent: not applied; PytorchSSD's
        fallback resize replaces the augmented one's draw)."""
        return dict(self._drawn)

    def __call__(self, height: int, width: int, target: dict) -> tuple[DrawnAugmentation | PytorchSSDDraws, dict]:
        """Draw for one image (under the caller's seeded generator); returns the draws and the transformed target."""
        self._drawn = {}
        meta = tv_tensors.Image(torch.empty(3, height, width, dtype=torch.uint8, device="meta"))
        _, target = self.transform(meta, target)
        drawn = self._drawn
        interpolation = drawn["RandomInterpolationResize"]["interpolation"]
        if self.augmentation == "pytorchssd":
            return self._pytorchssd(drawn, height, width, interpolation), target
        left, top = 0, 0
        canvas_w, canvas_h = width, height
        if "RandomZoomOut" in drawn:
            pad_left, pad_top, pad_right, pad_bottom = drawn["RandomZoomOut"]["padding"]
            left, top = pad_left, pad_top
            canvas_w, canvas_h = width + pad_left + pad_right, height + pad_top + pad_bottom
        crop = drawn.get("RandomIoUCrop") or {}
        x0, y0 = (crop["left"], crop["top"]) if crop else (0, 0)
        w, h = (crop["width"], crop["height"]) if crop else (canvas_w, canvas_h)
        field = (x0 - left, y0 - top, x0 - left + w, y0 - top + h)
        flip = "RandomHorizontalFlip" in drawn
        return DrawnAugmentation(drawn["RandomPhotometricDistort"], field, flip, interpolation), target

    def _pytorchssd(self, drawn: dict, height: int, width: int, interpolation: str) -> PytorchSSDDraws:
        if self.transform.fell_back:  # the original image, only resized
            return PytorchSSDDraws(None, (0, 0, width, height), (0, 0, 0, 0), False, interpolation)
        crop = drawn.get("RandomIoUCrop") or {}
        box = (
            (crop["left"], crop["top"], crop["left"] + crop["width"], crop["top"] + crop["height"])
            if crop
            else (0, 0, width, height)
        )
        padding = tuple(drawn["RandomZoomOut"]["padding"]) if "RandomZoomOut" in drawn else (0, 0, 0, 0)
        flip = "RandomHorizontalFlip" in drawn
        return PytorchSSDDraws(drawn["RandomPhotometricDistort"], box, padding, flip, interpolation)


def decode_batch(samples: list[RawSample], device: torch.device) -> list[torch.Tensor]:
    """uint8 [3, H, W] images on ``device``: JPEGs decoded there in one call, anything else on the CPU."""
    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec; they are what both devices share
        warnings.simplefilter("ignore", DeprecationWarning)
        jpeg = [i for i, s in enumerate(samples) if bytes(s.data[:2].tolist()) == _JPEG_MAGIC]
        images: list[torch.Tensor | None] = [None] * len(samples)
        if jpeg:
            try:
                decoded = torchvision.io.decode_jpeg(
                    [samples[i].data for i in jpeg], mode=torchvision.io.ImageReadMode.RGB, device=device
                )
            except RuntimeError:
                decoded = [_decode_one(samples[i], device) for i in jpeg]  # find the file that failed
            for i, image in zip(jpeg, decoded):
                images[i] = image
        for i, sample in enumerate(samples):
            if images[i] is None:
                images[i] = _decode_one(sample, device)
    for image, sample in zip(images, samples):
        problem = size_mismatch(sample.file, image.shape[2], image.shape[1], sample.width, sample.height)
        if problem:
            raise DatasetError(problem)
    return images


_decode = decode_batch  # the name benchmarks/bench_input.py imports


def _decode_one(sample: RawSample, device: torch.device) -> torch.Tensor:
    try:
        return torchvision.io.decode_image(sample.data, mode=torchvision.io.ImageReadMode.RGB).to(device)
    except RuntimeError as error:
        raise DatasetError(undecodable(sample.file, error)) from error


def photometric(image: torch.Tensor, params: dict) -> torch.Tensor:
    """RandomPhotometricDistort's steps, in its order, with its kernels, on a float [0, 1] image."""
    if params["brightness_factor"] is not None:
        image = F.adjust_brightness(image, params["brightness_factor"])
    if params["contrast_factor"] is not None and params["contrast_before"]:
        image = F.adjust_contrast(image, params["contrast_factor"])
    if params["saturation_factor"] is not None:
        image = F.adjust_saturation(image, params["saturation_factor"])
    if params["hue_factor"] is not None:
        image = F.adjust_hue(image, params["hue_factor"])
    if params["contrast_factor"] is not None and not params["contrast_before"]:
        image = F.adjust_contrast(image, params["contrast_factor"])
    if params["channel_permutation"] is not None:
        image = F.permute_channels(image, params["channel_permutation"])
    return image


def _field(pixels: torch.Tensor, field: tuple[int, int, int, int], fill: torch.Tensor) -> torch.Tensor:
    """The part (x0, y0, x1, y1) of an image [3, H, W] (exclusive edges, possibly beyond it), the fill outside it."""
    x0, y0, x1, y1 = (int(v) for v in field)
    height, width = pixels.shape[-2:]
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return pixels
    out = fill.expand(3, y1 - y0, x1 - x0).clone()
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if right > left and bottom > top:
        out[:, top - y0 : bottom - y0, left - x0 : right - x0] = pixels[:, top:bottom, left:right]
    return out


def augment_one(image: torch.Tensor, drawn: DrawnAugmentation | PytorchSSDDraws, size: int, fill: torch.Tensor):
    """One decoded uint8 image [3, H, W] through its draws: float [3, size, size] in [0, 1] (``fill`` [3, 1, 1] the
    zoom-out / expand colour in [0, 1]). The per-image reference of :func:`augment_batch`."""
    pixels = _before_distortion(image, drawn)
    if drawn.photometric is not None:
        pixels = photometric(pixels, drawn.photometric)
    return _after_distortion(pixels, drawn, size, fill)


def _before_distortion(image: torch.Tensor, drawn) -> torch.Tensor:
    """Float [0, 1] pixels the distortion sees: the image (SSD's order) or its crop (PytorchSSD's)."""
    pixels = image.float() / 255
    if isinstance(drawn, PytorchSSDDraws):
        x0, y0, x1, y1 = drawn.crop
        pixels = pixels[:, y0:y1, x0:x1]
    return pixels


def _after_distortion(pixels: torch.Tensor, drawn, size: int, fill: torch.Tensor) -> torch.Tensor:
    if isinstance(drawn, PytorchSSDDraws):  # crop (done), distort (done), expand, flip, resize
        x0, y0, x1, y1 = drawn.crop
        left, top, right, bottom = drawn.padding
        pixels = _field(pixels, (-left, -top, x1 - x0 + right, y1 - y0 + bottom), fill)
        if drawn.flip:
            pixels = pixels.flip(-1)
        return resize_pixels(pixels * 255, size, drawn.interpolation) / 255
    # SSD's: distort the image (done), zoom out and crop (the field), resize, flip
    out = resize_pixels(_field(pixels, drawn.field, fill) * 255, size, drawn.interpolation)
    return (out.flip(-1) if drawn.flip else out) / 255


def _distort_batch(pixels: list[torch.Tensor], draws: list) -> list[torch.Tensor]:
    """Each image's drawn distortion, the whole batch in one kernel per step (:mod:`.photometric_batch`)."""
    chosen = [i for i, d in enumerate(draws) if d.photometric is not None]
    if not chosen:
        return pixels
    batch, mask = pad_batch([pixels[i] for i in chosen])
    out = photometric_batch(batch, mask, [draws[i].photometric for i in chosen])
    pixels = list(pixels)
    for row, i in enumerate(chosen):
        pixels[i] = out[row, :, : pixels[i].shape[-2], : pixels[i].shape[-1]]
    return pixels


def augment_batch(
    samples: list[RawSample],
    size: int,
    device: torch.device,
    memory_format=torch.contiguous_format,
    normalize: tuple | None = None,
    cache: ImageCache | None = None,
) -> torch.Tensor:
    """Decode and augment a batch on ``device``: float [B, 3, size, size], normalized like the CPU pipeline
    (``normalize`` = (mean, std); ImageNet's by default). With ``cache`` the decoded images come from it, by the
    samples' ``index``."""
    normalize = normalize or normalization("imagenet")
    images = cache.images([s.index for s in samples], device) if cache is not None else decode_batch(samples, device)
    if isinstance(samples[0].drawn, AuthorsDraws):  # the authors recipe's draws (loader.parameter_drawer)
        out = apply_authors_batch(images, [s.drawn for s in samples], size, *normalize)
        return out.contiguous(memory_format=memory_format)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in normalize)
    fill = torch.tensor(fill_colour(normalize), device=device, dtype=torch.float32).view(3, 1, 1) / 255
    draws = [sample.drawn for sample in samples]
    pixels = _distort_batch([_before_distortion(image, d) for image, d in zip(images, draws)], draws)
    out = torch.stack([_after_distortion(p, d, size, fill) for p, d in zip(pixels, draws)])
    out = (out - mean) / std
    return out.contiguous(memory_format=memory_format)


__all__ = [
    "DrawnAugmentation",
    "ParameterDrawer",
    "RawSample",
    "augment_batch",
    "augment_one",
    "decode_batch",
    "photometric",
    "read_sample",
]
