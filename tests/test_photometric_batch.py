"""The batched photometric distortion against torchvision's per-image kernels (the device path's reference)."""

import torch
from torchvision.transforms import v2

from scbloss.data.device_augment import photometric
from scbloss.data.photometric_batch import pad_batch, photometric_batch


def _draws(seed: int, image: torch.Tensor) -> dict:
    torch.manual_seed(seed)
    return v2.RandomPhotometricDistort(p=0.5).make_params([image])


def test_the_batch_equals_torchvisions_kernels_image_by_image():
    """12 images of 12 sizes, each with its own draws (some steps drawn, some not; contrast before and after):
    equal to the per-image result within 1e-5 of the [0, 1] range (float32 rounding of the blends and the mean)."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 20 + 3 * i, 31 - 2 * i, generator=generator) for i in range(12)]
    params = [_draws(seed, image) for seed, image in enumerate(images)]
    assert {p["contrast_before"] for p in params} == {True, False}
    assert {p["hue_factor"] is None for p in params} == {True, False}
    assert {p["channel_permutation"] is None for p in params} == {True, False}
    batch, mask = pad_batch(images)
    out = photometric_batch(batch, mask, params)
    for row, (image, p) in enumerate(zip(images, params)):
        expected = photometric(image, p)
        got = out[row, :, : image.shape[-2], : image.shape[-1]]
        assert (got - expected).abs().max() <= 1e-5, (row, p)


def test_factors_and_the_contrast_mean_over_each_images_own_pixels():
    """Brightness 0.5 on 0.6 gives 0.3; contrast 2 of a 2x1 image (0.2, 0.4 grey) about its grayscale mean
    0.3 x 0.9999 (torchvision's weights 0.2989 + 0.587 + 0.114) gives 2x - 0.29997, whatever the padding its taller
    neighbour adds; a permutation (2, 0, 1) reorders the channels."""
    grey = torch.tensor([0.2, 0.4]).view(1, 1, 2).expand(3, 1, 2)
    flat = torch.full((3, 4, 4), 0.6)
    none = dict(brightness_factor=None, contrast_factor=None, contrast_before=True, saturation_factor=None)
    none.update(hue_factor=None, channel_permutation=None)
    batch, mask = pad_batch([grey, flat])
    out = photometric_batch(batch, mask, [{**none, "contrast_factor": 2.0}, {**none, "brightness_factor": 0.5}])
    torch.testing.assert_close(out[0, :, :1, :2], torch.tensor([0.10003, 0.50003]).view(1, 1, 2).expand(3, 1, 2))
    torch.testing.assert_close(out[1], torch.full((3, 4, 4), 0.3))
    rgb = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    batch, mask = pad_batch([rgb])
    out = photometric_batch(batch, mask, [{**none, "channel_permutation": [2, 0, 1]}])
    torch.testing.assert_close(out[0].flatten(), torch.tensor([0.3, 0.1, 0.2]))
