"""RandomPhotometricDistort's steps for a whole batch at once: each image's factors as tensors, one kernel per step.

The images (of different sizes) are zero-padded into one tensor; each step is torchvision's arithmetic (its
``_blend``, grayscale weights and HSV conversion) with a [B, 1, 1, 1] factor, an image whose step was not drawn
taking the identity (factor 1, hue shift 0 kept out by a mask), and the contrast mean taken over each image's own
pixels. Hand-written rather than kornia's batched ops: kornia's contrast averages over the padded tensor, its
brightness adds, its saturation and hue work in its own HSV (hue in radians), so none reproduces torchvision's
per-image result (benchmarks/bench_input.py measures both). Equal to :func:`~scbloss.data.device_augment.photometric`
image by image within float32 rounding (tests/test_photometric_batch.py: at most 1e-5 of the [0, 1] range).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

# torchvision's own HSV conversion (what adjust_hue runs), private but the only way to apply its hue step with a
# per-image shift in one call
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv


def _factors(params: list[dict], key: str, device, default: float, when=None) -> torch.Tensor:
    values = [default if p[key] is None or (when is not None and not when(p)) else float(p[key]) for p in params]
    return torch.tensor(values, dtype=torch.float64, device=device).view(-1, 1, 1, 1)


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with a per-image ratio (float64, rounded to float32 as its Python float is)."""
    return (image * ratio.float() + other * (1.0 - ratio).float()).clamp_(0, 1)


def pad_batch(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [3, h_i, w_i] zero-padded into [B, 3, H, W], and the mask of each one's own pixels [B, 1, H, W]."""
    height, width = max(i.shape[-2] for i in images), max(i.shape[-1] for i in images)
    batch = images[0].new_zeros(len(images), 3, height, width)
    mask = images[0].new_zeros(len(images), 1, height, width)
    for index, image in enumerate(images):
        batch[index, :, : image.shape[-2], : image.shape[-1]] = image
        mask[index, :, : image.shape[-2], : image.shape[-1]] = 1
    return batch, mask


def photometric_batch(images: torch.Tensor, mask: torch.Tensor, params: list[dict]) -> torch.Tensor:
    """RandomPhotometricDistort's parameters ``params[i]`` applied to float [0, 1] images [B, 3, H, W] (``mask``:
    each image's own pixels, for the contrast mean), in its order."""
    device = images.device
    count = mask.sum(dim=(-3, -2, -1), keepdim=True)

    def contrast(x, factor):
        mean = (F.rgb_to_grayscale(x) * mask).sum(dim=(-3, -2, -1), keepdim=True) / count
        return _blend(x, mean, factor)

    x = images.mul(_factors(params, "brightness_factor", device, 1.0).float()).clamp_(0, 1)
    x = contrast(x, _factors(params, "contrast_factor", device, 1.0, lambda p: p["contrast_before"]))
    x = _blend(x, F.rgb_to_grayscale(x), _factors(params, "saturation_factor", device, 1.0))
    hue = [p["hue_factor"] is not None for p in params]
    if any(hue):
        h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
        h = (h + _factors(params, "hue_factor", device, 0.0).float()[:, 0]).remainder_(1.0)
        shifted = _hsv_to_rgb(torch.stack((h, s, v), dim=-3))
        x = torch.where(torch.tensor(hue, device=device).view(-1, 1, 1, 1), shifted, x)
    x = contrast(x, _factors(params, "contrast_factor", device, 1.0, lambda p: not p["contrast_before"]))
    order = [
        [0, 1, 2] if p["channel_permutation"] is None else [int(c) for c in p["channel_permutation"]] for p in params
    ]
    order = torch.tensor(order, device=device).view(-1, 3, 1, 1).expand_as(x)
    return x.gather(1, order)


__all__ = ["pad_batch", "photometric_batch"]
