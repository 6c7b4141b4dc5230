"""SSD's training augmentation as the paper's released code runs it (mmdetection v1.0), reimplemented in torch.

Source: GitHub 1243France/SCB_Loss at 23a0604, ``configs/pascal_voc/ssd300_voc.py`` L49-73 (the pipeline and its
parameters) and ``mmdet/datasets/pipelines/transforms.py`` (the steps; cited below as ``transforms.py`` with line
numbers). In order: PhotoMetricDistortion (L445-531) on float32 0-255 pixels, never clipped; Expand (L534-607,
mean fill, ratio 1-4, p 0.5); MinIoURandomCrop (L610-696); Resize to (size, size) ignoring the aspect ratio
(L23-187, OpenCV bilinear, no antialiasing); Normalize (L325-352); RandomFlip (L190-261, p 0.5).

Boxes are mmdetection v1's inclusive pixel boxes [x1, y1, x2, y2] (width x2 - x1 + 1) in and out; the caller
converts. Images are RGB (mmdet's are BGR: only the HSV conversion and the channel swap see the order, and both
are written for RGB here).

Random numbers all come from torch's global generator, in mmdet's order, one call per numpy call of mmdet
(``randint(2)`` -> ``torch.randint(2, (1,))``, ``uniform(a, b)`` -> ``a + (b - a) * torch.rand(1, float64)``) except
the crop's trials, drawn 50 at a time:

1. brightness: randint(2); if 1, uniform(-32, 32)                                      (L480-483)
2. contrast mode: randint(2), 1 = contrast before the HSV steps                        (L487)
3. if contrast first: randint(2); if 1, uniform(0.5, 1.5)                              (L488-492)
4. saturation: randint(2); if 1, uniform(0.5, 1.5)                                     (L498-500)
5. hue: randint(2); if 1, uniform(-18, 18)                                             (L503-506)
6. if contrast last: randint(2); if 1, uniform(0.5, 1.5)                               (L512-516)
7. channel swap: randint(2); if 1, randperm(3)                                         (L519-520)
8. expand: rand(); skipped if > 0.5; else ratio = uniform(1, 4), left = uniform(0, w * ratio - w),
   top = uniform(0, h * ratio - h)                                                     (L565-575)
9. crop (only with at least one box): repeat { mode = randint(7) over (1, .1, .3, .5, .7, .9, 0); 1 = no crop;
   else rand(50, 4, float64), row i = trial i's (new_w, new_h, left, top) as new_w = uniform(.3 w, w),
   new_h = uniform(.3 h, h), left = uniform(w - new_w), top = uniform(h - new_h) (numpy's default high = 1);
   the first trial passing the tests is the crop, none: next mode }                    (L633-665)
   mmdet draws left and top only after the aspect test passes; drawing them for every trial leaves each
   accepted trial's distribution, and the first accepted one's, the same (the uniforms are independent).
10. flip: rand() < 0.5                                                                 (L233)

The pixels: :func:`apply_authors` (CPU reference, mmdet step by step) and :func:`apply_authors_batch` (a batch on
any device: photometric with per-image factors, then expand + crop + resize of every image as one separable
bilinear gather over its field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .transforms import CAFFE_STD, MMDET_CAFFE_MEAN

# ssd300_voc.py L53-58
BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18
# ssd300_voc.py L59-63 and transforms.py L553 (prob's default)
EXPAND_RATIO = (1, 4)
EXPAND_PROB = 0.5
# ssd300_voc.py L64-67; transforms.py L625 puts 1 (no crop) first and 0 last
CROP_MODES = (1, 0.1, 0.3, 0.5, 0.7, 0.9, 0)
MIN_CROP_SIZE = 0.3
CROP_TRIALS = 50  # transforms.py L639
FLIP_PROB = 0.5  # ssd300_voc.py L70
# ssd300_voc.py L49: Normalize's mean and std (std 1: 0-255 minus the mean pixel), in our [0, 1] convention
AUTHORS_MEAN = MMDET_CAFFE_MEAN
AUTHORS_STD = CAFFE_STD

FLT_EPSILON = 2.0**-23  # OpenCV's float HSV conversion divides by (x + FLT_EPSILON)
# OpenCV's HSV2RGB_f sector table, as (r, g, b) indices into (v, v(1-s), v(1-s f), v(1-s(1-f)))
_HSV_SECTORS = ((0, 3, 1), (2, 0, 1), (1, 0, 3), (1, 2, 0), (3, 1, 0), (0, 1, 2))


@dataclass
class AuthorsDraws:
    """Everything one sample drew, for an image of ``height`` x ``width``."""

    height: int
    width: int
    brightness: float | None = None  # added to 0-255 pixels
    contrast_first: bool = False  # contrast before (True) or after the HSV steps
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None  # degrees
    permutation: tuple[int, int, int] | None = None  # RGB output channel k = input channel permutation[k]
    expand: tuple[float, int, int] | None = None  # (ratio, left, top): the image's place on the canvas
    crop: tuple[int, int, int, int] | None = None  # (x1, y1, x2, y2) in canvas pixels, x2/y2 exclusive
    flip: bool = False

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) after the expansion (transforms.py L572)."""
        if self.expand is None:
            return self.height, self.width
        ratio = self.expand[0]
        return int(self.height * ratio), int(self.width * ratio)

    @property
    def field(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive edges, in original image pixels: the area that becomes the output (outside
        the image it is the mean fill)."""
        left, top = self.expand[1:] if self.expand is not None else (0, 0)
        canvas_h, canvas_w = self.canvas
        x1, y1, x2, y2 = self.crop if self.crop is not None else (0, 0, canvas_w, canvas_h)
        return x1 - left, y1 - top, x2 - left, y2 - top


def _randint(high: int) -> int:
    return int(torch.randint(high, (1,)))


def numpy_uniform(u: float, low: float, high: float = 1.0) -> float:
    """numpy's ``uniform(low, high=1.0)`` for the uniform [0, 1) draw ``u``: low + (high - low) u, also when
    high < low (numpy's RandomState.uniform neither checks nor swaps)."""
    return low + (high - low) * u


def _uniform(low: float, high: float = 1.0) -> float:
    return numpy_uniform(float(torch.rand(1, dtype=torch.float64)), low, high)


def draw_photometric() -> dict:
    """Steps 1-7 of the draw order: PhotoMetricDistortion's parameters (transforms.py L477-520)."""
    brightness = _uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA) if _randint(2) else None
    contrast_first = _randint(2) == 1
    contrast = None
    if contrast_first and _randint(2):
        contrast = _uniform(*CONTRAST_RANGE)
    saturation = _uniform(*SATURATION_RANGE) if _randint(2) else None
    hue = _uniform(-HUE_DELTA, HUE_DELTA) if _randint(2) else None
    if not contrast_first and _randint(2):
        contrast = _uniform(*CONTRAST_RANGE)
    permutation = tuple(torch.randperm(3).tolist()) if _randint(2) else None
    return dict(
        brightness=brightness,
        contrast_first=contrast_first,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        permutation=permutation,
    )


def draw_expand(height: int, width: int) -> tuple[float, int, int] | None:
    """Step 8: Expand's (ratio, left, top), or None (transforms.py L565-575)."""
    if _uniform(0, 1) > EXPAND_PROB:
        return None
    ratio = _uniform(*EXPAND_RATIO)
    left = int(_uniform(0, width * ratio - width))
    top = int(_uniform(0, height * ratio - height))
    return ratio, left, top


def patch_ious(patch, boxes: np.ndarray) -> np.ndarray:
    """IoU of a patch [4] (or patches [T, 4]) with each box [N, 4]: [N] (or [T, N]), in float32 with +1 widths
    (mmdet/core/evaluation/bbox_overlaps.py L19-46)."""
    patches = np.asarray(patch, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    p = patches.reshape(-1, 1, 4)
    one = np.float32(1)
    area_patch = (p[..., 2] - p[..., 0] + one) * (p[..., 3] - p[..., 1] + one)
    areas = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    iw = np.maximum(np.minimum(p[..., 2], boxes[:, 2]) - np.maximum(p[..., 0], boxes[:, 0]) + one, 0)
    ih = np.maximum(np.minimum(p[..., 3], boxes[:, 3]) - np.maximum(p[..., 1], boxes[:, 1]) + one, 0)
    overlap = iw * ih
    ious = overlap / (area_patch + areas - overlap)
    return ious.reshape(-1) if patches.ndim == 1 else ious


def crop_accepts(patch, boxes: np.ndarray, min_iou: float):
    """MinIoURandomCrop's IoU test: every box overlaps the patch by at least ``min_iou`` (transforms.py L652-655);
    for patches [T, 4], a bool [T]."""
    ious = patch_ious(patch, boxes)
    accepted = ~(ious.min(axis=-1).astype(np.float64) < min_iou)
    return bool(accepted) if ious.ndim == 1 else accepted


def centres_inside(patch, boxes: np.ndarray) -> np.ndarray:
    """The boxes whose centre lies strictly inside the patch [4] ([N]), or each of patches [T, 4] ([T, N])
    (transforms.py L658-660)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / np.float32(2)
    p = np.asarray(patch)
    x1, y1, x2, y2 = (p[..., k, None] for k in range(4))
    inside = (centre[:, 0] > x1) & (centre[:, 1] > y1) & (centre[:, 0] < x2) & (centre[:, 1] < y2)
    return inside.reshape(-1) if p.ndim == 1 else inside


def crop_trials(height: int, width: int, count: int = CROP_TRIALS) -> tuple[np.ndarray, ...]:
    """``count`` MinIoURandomCrop trials in a ``height`` x ``width`` canvas (transforms.py L640-651): float64
    new_w, new_h, left, top, whether the aspect test passes, and the int64 patches [count, 4]."""
    u = torch.rand(count, 4, dtype=torch.float64).numpy()
    new_w = numpy_uniform(u[:, 0], MIN_CROP_SIZE * width, width)
    new_h = numpy_uniform(u[:, 1], MIN_CROP_SIZE * height, height)
    aspect = (new_h / new_w >= 0.5) & (new_h / new_w <= 2)
    # mmdet calls numpy's uniform(w - new_w) (L647-648): low = w - new_w, high = 1.0, so left lies in
    # (1, w - new_w], never in [0, 1), while w - new_w >= 1
    left = numpy_uniform(u[:, 2], width - new_w)
    top = numpy_uniform(u[:, 3], height - new_h)
    # all positive: floor is int()
    patches = np.floor(np.stack((left, top, left + new_w, top + new_h), 1)).astype(np.int64)
    return new_w, new_h, left, top, aspect, patches


def draw_crop(height: int, width: int, boxes: np.ndarray) -> tuple[int, int, int, int] | None:
    """Step 9: MinIoURandomCrop's patch in a ``height`` x ``width`` canvas, or None (transforms.py L628-665).

    ``boxes`` are float32 [N, 4] in the canvas. With no boxes mmdet fails (``min()`` of an empty array, L654);
    here the crop is skipped without drawing.
    """
    if len(boxes) == 0:
        return None
    while True:
        min_iou = CROP_MODES[_randint(len(CROP_MODES))]
        if min_iou == 1:
            return None
        *_, aspect, patches = crop_trials(height, width)
        # a patch under a pixel wide only happens in images under ~4 pixels, where mmdet would crash on it
        accepted = aspect & (patches[:, 2] > patches[:, 0]) & (patches[:, 3] > patches[:, 1])
        accepted &= crop_accepts(patches, boxes, min_iou) & centres_inside(patches, boxes).any(1)
        if accepted.any():
            return tuple(int(v) for v in patches[accepted.argmax()])


def _crop_boxes(patch, boxes: np.ndarray) -> np.ndarray:
    """Kept boxes clipped to the patch (x2, y2 up to its exclusive edge, as mmdet) and shifted (L668-670)."""
    boxes = boxes.copy()
    boxes[:, 2:] = np.minimum(boxes[:, 2:], np.asarray(patch[2:], dtype=np.float32))
    boxes[:, :2] = np.maximum(boxes[:, :2], np.asarray(patch[:2], dtype=np.float32))
    return boxes - np.asarray(patch[:2] * 2, dtype=np.float32)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """mmdet's inclusive horizontal flip: x1' = W - x2 - 1, x2' = W - x1 - 1 (transforms.py L218-221)."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return flipped


def draw_authors(
    height: int, width: int, boxes: torch.Tensor, labels: torch.Tensor, size: int = 300
) -> tuple[AuthorsDraws, torch.Tensor, torch.Tensor]:
    """Draw one sample's augmentation from the image's shape and boxes alone (no pixels).

    ``boxes``: [N, 4] inclusive xyxy in the image. Returns the draws and the kept boxes (float32, inclusive xyxy
    in the size x size output, after resize and flip) with their labels.
    """
    photometric = draw_photometric()
    out = boxes.detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
    keep = np.ones(len(out), dtype=bool)
    expand = draw_expand(height, width)
    canvas_h, canvas_w = height, width
    if expand is not None:
        ratio, left, top = expand
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        out = out + np.asarray((left, top, left, top), dtype=np.float32)  # L577
    crop = draw_crop(canvas_h, canvas_w, out)
    out_h, out_w = canvas_h, canvas_w
    if crop is not None:
        keep = centres_inside(crop, out)
        out = _crop_boxes(crop, out[keep])
        out_w, out_h = crop[2] - crop[0], crop[3] - crop[1]
    # Resize: scale factors in float32 (L127-128), clipped to the output (L138-140)
    out = out * np.asarray([size / out_w, size / out_h] * 2, dtype=np.float32)
    out = np.clip(out, 0, size - 1)
    flip = _uniform(0, 1) < FLIP_PROB
    if flip:
        out = flip_boxes(out, size)
    draws = AuthorsDraws(height, width, **photometric, expand=expand, crop=crop, flip=flip)
    return draws, torch.from_numpy(out), labels[torch.from_numpy(keep)]


# ----------------------------------------------------------------------------------------------------- pixels


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's float RGB -> HSV on [..., 3, H, W]: H in degrees [0, 360], S = (max - min) / (|max| + eps), V = max,
    for any pixel values (OpenCV modules/imgproc/src/color_hsv, RGB2HSV_f; mmcv.bgr2hsv is cv2.cvtColor)."""
    r, g, b = x.unbind(-3)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = diff / (v.abs() + FLT_EPSILON)
    k = 60 / (diff + FLT_EPSILON)
    h = torch.where(v == r, (g - b) * k, torch.where(v == g, (b - r) * k + 120, (r - g) * k + 240))
    h = torch.where(h < 0, h + 360, h)
    return torch.stack((h, s, v), -3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's float HSV -> RGB on [..., 3, H, W], H in degrees within [-360, 720) (HSV2RGB_f)."""
    h, s, v = x.unbind(-3)
    h = h * (6 / 360)
    h = torch.where(h >= 6, h - 6, torch.where(h < 0, h + 6, h))
    sector = h.floor()
    f = h - sector
    wrapped = sector >= 6  # h rounded up to 6: OpenCV takes sector 0 at f = 0
    f = torch.where(wrapped, torch.zeros_like(f), f)
    sector = torch.where(wrapped, torch.zeros_like(sector), sector).long()
    tab = torch.stack((v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))), -3)
    lookup = torch.tensor(_HSV_SECTORS, device=x.device)  # [6, 3]
    index = lookup[sector].movedim(-1, -3)  # [..., 3, H, W]
    return tab.gather(-3, index)


def _wrap_hue(hsv: torch.Tensor) -> torch.Tensor:
    h = hsv[..., 0, :, :]
    h = torch.where(h > 360, h - 360, h)  # L505-506: a hue of exactly 360 stays
    h = torch.where(h < 0, h + 360, h)
    return torch.cat((h.unsqueeze(-3), hsv[..., 1:, :, :]), -3)


def photometric(x: torch.Tensor, draws: AuthorsDraws) -> torch.Tensor:
    """PhotoMetricDistortion's pixels on a float32 0-255 RGB [3, H, W] image, unclipped (transforms.py L477-523).

    The HSV round trip happens whatever was drawn (L495, L509), and is not the identity where V < 0 (OpenCV's S
    divides by |V|): darkened pixels below 0 come back changed, as in mmdet."""
    if draws.brightness is not None:
        x = x + draws.brightness
    if draws.contrast_first and draws.contrast is not None:
        x = x * draws.contrast
    hsv = rgb_to_hsv(x)
    if draws.saturation is not None:
        hsv = torch.stack((hsv[0], hsv[1] * draws.saturation, hsv[2]))
    if draws.hue is not None:
        hsv = _wrap_hue(torch.stack((hsv[0] + draws.hue, hsv[1], hsv[2])))
    x = hsv_to_rgb(hsv)
    if not draws.contrast_first and draws.contrast is not None:
        x = x * draws.contrast
    if draws.permutation is not None:
        x = x[list(draws.permutation)]
    return x


def _as_0_255(image: torch.Tensor) -> torch.Tensor:
    """uint8 as is; float images in torchvision's [0, 1] convention, scaled to 0-255."""
    if image.dtype == torch.uint8:
        return image.float()
    return image.float() * 255


def _fill(mean, device) -> torch.Tensor:
    """Expand's canvas colour: the Normalize mean in 0-255, as the config ties them (ssd300_voc.py L61); RGB here,
    where mmdet reverses it for its BGR image (transforms.py L556-557)."""
    return torch.tensor([255 * m for m in mean], dtype=torch.float32, device=device).view(3, 1, 1)


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x / 255 - mean_t) / std_t


def apply_authors(
    image: torch.Tensor, draws: AuthorsDraws, size: int = 300, mean=AUTHORS_MEAN, std=AUTHORS_STD
) -> torch.Tensor:
    """The reference pixels: float32 [3, size, size] from an RGB [3, H, W] image (uint8, or float in [0, 1]),
    following mmdet step by step. ``mean``/``std`` are of [0, 1] pixels (the default: 0-255 minus the mean pixel)."""
    if tuple(image.shape[-2:]) != (draws.height, draws.width):
        raise ValueError(f"image is {tuple(image.shape[-2:])}, the draws are for {(draws.height, draws.width)}")
    x = photometric(_as_0_255(image), draws)
    if draws.expand is not None:  # L572-576
        _, left, top = draws.expand
        canvas = _fill(mean, x.device).expand(3, *draws.canvas).clone()
        canvas[:, top : top + draws.height, left : left + draws.width] = x
        x = canvas
    if draws.crop is not None:  # L667
        x1, y1, x2, y2 = draws.crop
        x = x[:, y1:y2, x1:x2]
    # mmcv.imresize: cv2.resize INTER_LINEAR, which has the half-pixel centres and no antialiasing of this call
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
    x = _normalize(x, mean, std)
    if draws.flip:
        x = x.flip(-1)
    return x


def _taps(start: torch.Tensor, length: torch.Tensor, size: int, limit: int):
    """Bilinear taps of F.interpolate(align_corners=False) from ``length`` pixels starting at ``start`` to ``size``
    for each row of a batch: (low index, high index, weight of the high one), indices clamped to [0, limit - 1].

    The arithmetic is PyTorch's kernel's (aten/src/ATen/native/UpSample.h: float32 scale = in / out, source =
    scale (j + 0.5) - 0.5 floored at 0, the high tap the low one at the last pixel), in the crop's coordinates."""
    scale = (length.float() / size).double()  # [B]
    j = torch.arange(size, device=start.device, dtype=torch.float64)
    # PyTorch's kernels are compiled with FMA: scale * (j + 0.5) - 0.5 rounded once, which float64 reproduces
    # (the product of two float32 and the subtraction are exact in it)
    src = (scale[:, None] * (j + 0.5) - 0.5).float().clamp_min(0)
    low = torch.minimum(src.floor().long(), length[:, None] - 1)
    weight = (src - low.float()).clamp(0, 1)
    high = low + (low < length[:, None] - 1).long()
    return (start[:, None] + low).clamp(0, limit - 1), (start[:, None] + high).clamp(0, limit - 1), weight


def _mix(low: torch.Tensor, high: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """low (1 - weight) + high weight rounded as PyTorch's FMA-compiled CPU kernel does, fma(low, 1 - weight,
    high weight): in float64, where the product of two float32 is exact (the sum rounds twice only when the two
    terms' magnitudes differ by over 2^29)."""
    return (low.double() * (1 - weight).double() + (high * weight).double()).float()


def resample_fields(canvas: torch.Tensor, fields: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of each image's field of ``canvas`` [B, C, H, W] to [B, C, size, size]: as F.interpolate
    (align_corners=False, antialias=False) of ``canvas[b, :, y0:y1, x0:x1]`` if the canvas held that area, with
    indices outside it clamped to its edge. ``fields``: int64 [B, 4] (x0, y0, x1, y1), exclusive edges."""
    batch, channels, height, width = canvas.shape
    x0, y0, x1, y1 = fields.unbind(1)
    col_low, col_high, wx = _taps(x0, x1 - x0, size, width)
    row_low, row_high, wy = _taps(y0, y1 - y0, size, height)

    def along_x(row_index):  # rows picked (no arithmetic), then interpolated along x, as the kernel's inner level
        rows = canvas.gather(2, row_index[:, None, :, None].expand(batch, channels, size, width))
        low = rows.gather(3, col_low[:, None, None, :].expand(batch, channels, size, size))
        high = rows.gather(3, col_high[:, None, None, :].expand(batch, channels, size, size))
        return _mix(low, high, wx[:, None, None, :])

    return _mix(along_x(row_low), along_x(row_high), wy[:, None, :, None])


def apply_authors_batch(
    images: list[torch.Tensor], draws: list[AuthorsDraws], size: int = 300, mean=AUTHORS_MEAN, std=AUTHORS_STD
) -> torch.Tensor:
    """:func:`apply_authors` for a batch of RGB [3, H_i, W_i] images on one device: float32 [B, 3, size, size].

    The photometric steps run over the zero-padded batch with per-image factors ([B, 1, 1, 1]; 0 and 1 where not
    drawn, exact no-ops), then everything outside each image becomes the mean fill (one pixel of it around every
    image, so the image's border blends with the fill as on the canvas) and each image's field (``draws.field``) is
    resampled by :func:`resample_fields`, a separable gather with F.interpolate's own float32 taps. (grid_sample's
    float32 normalised coordinates put its samples off F.interpolate's: ~1e-2 on the 0-255 scale on noise.)

    Measured against :func:`apply_authors` on the CPU (tests/test_authors_augment.py, uint8 noise images with
    expand and crop across every image border): bit-equal for size > 64, max |difference| 6.1e-5 on the 0-255
    scale for size <= 64 (F.interpolate's CPU kernel rounds differently for narrow outputs); tested tolerance
    1e-3. Not measured on a GPU.
    """
    if len(images) != len(draws):
        raise ValueError(f"{len(images)} images but {len(draws)} draws")
    device = images[0].device
    batch = len(images)
    for image, d in zip(images, draws):
        if tuple(image.shape[-2:]) != (d.height, d.width):
            raise ValueError(f"image is {tuple(image.shape[-2:])}, the draws are for {(d.height, d.width)}")
    heights = torch.tensor([d.height for d in draws], device=device)
    widths = torch.tensor([d.width for d in draws], device=device)
    pad_h, pad_w = max(d.height for d in draws) + 2, max(d.width for d in draws) + 2
    x = torch.zeros(batch, 3, pad_h, pad_w, device=device)
    for index, image in enumerate(images):
        x[index, :, 1 : 1 + image.shape[-2], 1 : 1 + image.shape[-1]] = _as_0_255(image)

    def factor(values, default):
        values = [default if v is None else v for v in values]
        return torch.tensor(values, dtype=torch.float32, device=device).view(batch, 1, 1, 1)

    first = [d.contrast if d.contrast_first else None for d in draws]
    last = [None if d.contrast_first else d.contrast for d in draws]
    x = (x + factor([d.brightness for d in draws], 0.0)) * factor(first, 1.0)
    h, s, v = rgb_to_hsv(x).unbind(1)
    s = s * factor([d.saturation for d in draws], 1.0)[:, 0]
    h = h + factor([d.hue for d in draws], 0.0)[:, 0]
    x = hsv_to_rgb(_wrap_hue(torch.stack((h, s, v), 1))) * factor(last, 1.0)
    permutation = torch.tensor([d.permutation or (0, 1, 2) for d in draws], device=device)
    x = x.gather(1, permutation.view(batch, 3, 1, 1).expand_as(x))

    rows = torch.arange(pad_h, device=device).view(1, 1, pad_h, 1)
    cols = torch.arange(pad_w, device=device).view(1, 1, 1, pad_w)
    inside = (rows >= 1) & (rows <= heights.view(-1, 1, 1, 1)) & (cols >= 1) & (cols <= widths.view(-1, 1, 1, 1))
    x = torch.where(inside, x, _fill(mean, device))
    fields = torch.tensor([d.field for d in draws], device=device) + 1  # the padding's offset
    x = resample_fields(x, fields, size)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = (x / 255 - mean_t) / std_t
    flip = torch.tensor([d.flip for d in draws], device=device).view(batch, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


# ------------------------------------------------------------------------------------------------ transforms


def _xyxy(boxes) -> torch.Tensor:
    if isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
        boxes = TF.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
    return boxes.as_subclass(torch.Tensor) if isinstance(boxes, torch.Tensor) else torch.as_tensor(boxes)


def _draw_target(height: int, width: int, target: dict, size: int) -> tuple[AuthorsDraws, dict]:
    draws, boxes, labels = draw_authors(height, width, _xyxy(target["boxes"]), target["labels"], size)
    boxes = tv_tensors.BoundingBoxes(boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(size, size))
    return draws, {**target, "boxes": boxes, "labels": labels}


class AuthorsDrawer:
    """What loader workers run when the device augments: ``(height, width, target) -> (draws, target)``, the
    target's ``boxes`` (BoundingBoxes, inclusive xyxy) and ``labels`` transformed to the size x size output."""

    def __init__(self, size: int = 300) -> None:
        self.size = size

    def __call__(self, height: int, width: int, target: dict) -> tuple[AuthorsDraws, dict]:
        return _draw_target(height, width, target, self.size)


class AuthorsTrainTransform:
    """The CPU pipeline: ``(image, target) -> (float image [3, size, size], target)``, the same draws as
    :class:`AuthorsDrawer` under the same seed, then :func:`apply_authors`."""

    def __init__(self, size: int = 300, mean=AUTHORS_MEAN, std=AUTHORS_STD) -> None:
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[tv_tensors.Image, dict]:
        height, width = image.shape[-2:]
        draws, target = _draw_target(int(height), int(width), target, self.size)
        pixels = apply_authors(image.as_subclass(torch.Tensor), draws, self.size, self.mean, self.std)
        return tv_tensors.Image(pixels), target


__all__ = [
    "AUTHORS_MEAN",
    "AUTHORS_STD",
    "AuthorsDraws",
    "AuthorsDrawer",
    "AuthorsTrainTransform",
    "apply_authors",
    "apply_authors_batch",
    "centres_inside",
    "crop_accepts",
    "crop_trials",
    "draw_authors",
    "draw_crop",
    "draw_expand",
    "draw_photometric",
    "flip_boxes",
    "hsv_to_rgb",
    "numpy_uniform",
    "patch_ious",
    "photometric",
    "resample_fields",
    "rgb_to_hsv",
]
