"""The paper's released augmentation (mmdetection v1.0, scbloss.data.authors_augment): each test checks a value
derived here by hand or from an independent source (colorsys, numpy, F.interpolate, closed-form distributions)."""

import colorsys
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torchvision import tv_tensors

from scbloss.data import authors_augment as A
from scbloss.data.authors_augment import (
    AuthorsDrawer,
    AuthorsDraws,
    AuthorsTrainTransform,
    apply_authors,
    apply_authors_batch,
    centres_inside,
    crop_accepts,
    crop_trials,
    draw_authors,
    draw_expand,
    draw_photometric,
    flip_boxes,
    hsv_to_rgb,
    numpy_uniform,
    patch_ious,
    photometric,
    resample_fields,
    rgb_to_hsv,
)

STD_255 = (1 / 255,) * 3  # with mean 0: outputs are the 0-255 pixels
BATCH_TOLERANCE = 1e-3  # apply_authors_batch vs apply_authors, on the 0-255 scale


def _binomial_ok(count, n, p=0.5, sigmas=4.5):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def _target(height, width, boxes, labels=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.arange(1, len(boxes) + 1) if labels is None else labels
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": labels,
    }


def _seed(seed):
    torch.default_generator.manual_seed(seed)  # the generator the draws use; torch.manual_seed also seeds devices


def _random_case(rng):
    """(height, width, inclusive boxes float32 [n, 4]) of a small random image with 0-3 boxes."""
    height, width = (int(v) for v in rng.integers(8, 48, 2))
    n = int(rng.integers(0, 4))
    x = np.sort(rng.random((n, 2)) * (width - 1), 1)
    y = np.sort(rng.random((n, 2)) * (height - 1), 1)
    boxes = np.round(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1))
    return height, width, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


# --------------------------------------------------------------------------------------------- MinIoURandomCrop


def test_iou_has_plus_one_widths_and_every_box_must_pass():
    large, tiny = [10, 10, 89, 89], [95, 95, 96, 96]
    patch = (5, 5, 95, 95)
    # by hand: the patch covers 91 x 91 pixels, the large box 80 x 80 inside it, the tiny box 2 x 2 of which 1 pixel
    expected = [80 * 80 / (91 * 91), 1 / (91 * 91 + 4 - 1)]
    np.testing.assert_allclose(patch_ious(patch, np.array([large, tiny])), expected, rtol=1e-6)
    assert crop_accepts(patch, np.array([large]), 0.7)
    assert not crop_accepts(patch, np.array([large]), 0.9)
    assert not crop_accepts(patch, np.array([large, tiny]), 0.1)  # the large box passes, the tiny one does not
    # many patches at once (what the draw evaluates) give each patch's own answer
    patches = np.array([patch, (0, 0, 99, 99), (10, 10, 89, 89), (90, 90, 99, 99)])
    boxes = np.array([large, tiny], dtype=np.float32)
    for min_iou in (0.0, 0.1, 0.5):
        assert crop_accepts(patches, boxes, min_iou).tolist() == [crop_accepts(p, boxes, min_iou) for p in patches]
    assert centres_inside(patches, boxes).tolist() == [centres_inside(p, boxes).tolist() for p in patches]


def test_draw_never_crops_when_one_box_cannot_reach_the_minimum(monkeypatch):
    """With the modes cut to (0.3, no crop), a tiny far box (IoU <= 4 / (30 * 30) with any allowed patch) forbids
    every crop; without it, crops come, each with IoU >= 0.3 by a hand formula."""
    monkeypatch.setattr(A, "CROP_MODES", (0.3, 1))
    large, tiny = [10.0, 10, 89, 89], [97.0, 97, 98, 98]
    crops = []
    for seed in range(60):
        _seed(seed)
        assert A.draw_crop(100, 100, np.array([large, tiny], dtype=np.float32)) is None
        _seed(seed)
        crops.append(A.draw_crop(100, 100, np.array([large], dtype=np.float32)))
    drawn = [c for c in crops if c is not None]
    assert len(drawn) >= 20
    for x1, y1, x2, y2 in drawn:
        inter = max(0, min(x2, 89) - max(x1, 10) + 1) * max(0, min(y2, 89) - max(y1, 10) + 1)
        assert inter / ((x2 - x1 + 1) * (y2 - y1 + 1) + 80 * 80 - inter) >= 0.3


def test_centre_must_be_strictly_inside_the_patch():
    patch = (10, 10, 50, 50)
    boxes = np.array(
        [
            [0, 20, 20, 40],  # centre (10, 30): on the left edge
            [11, 20, 31, 40],  # centre (21, 30): inside
            [40, 20, 60, 40],  # centre (50, 30): on the right edge
            [30, 0, 40, 20],  # centre (35, 10): on the top edge
            [30, 1, 40, 20],  # centre (35, 10.5): inside
            [30, 40, 40, 60],  # centre (35, 50): on the bottom edge
        ],
        dtype=np.float32,
    )
    assert centres_inside(patch, boxes).tolist() == [False, True, False, False, True, False]


def test_numpy_uniform_matches_numpy_with_high_below_low():
    for seed in range(20):
        low = 3.0 + 40 * seed
        u = np.random.RandomState(seed).random_sample()
        assert numpy_uniform(u, low) == np.random.RandomState(seed).uniform(low)
        assert numpy_uniform(u, -32, 32) == np.random.RandomState(seed).uniform(-32, 32)


def _side_fraction_cdf(f):
    """CDF of new_w / w on a square canvas: (fw, fh) uniform on [0.3, 1]^2 given 0.5 <= fh / fw <= 2 (the allowed
    fh interval is [0.3, 2 fw], [0.3, 1] and [fw / 2, 1] on the three pieces; total area 0.41)."""
    f = np.asarray(f)
    low = f**2 - 0.3 * f
    mid = 0.1 + 0.7 * (f - 0.5)
    high = 0.17 + (f - 0.25 * f**2) - 0.51
    return np.where(f <= 0.5, low, np.where(f <= 0.6, mid, high)) / 0.41


def test_crop_trials_side_fractions_and_offsets():
    side = 1000
    new_w, new_h, left, top, aspect, patches = crop_trials(side, side, 3000)
    assert _binomial_ok(aspect.sum(), len(aspect), p=0.41 / 0.49)
    for fraction in (new_w[aspect] / side, new_h[aspect] / side):
        assert stats.kstest(fraction, _side_fraction_cdf).pvalue > 0.01
    # mmdet's uniform(w - new_w) = numpy's uniform(low=w - new_w, high=1): uniform on [1, w - new_w] (on
    # [w - new_w, 1) in the rare trials where w - new_w < 1)
    for offset, room in ((left[aspect], side - new_w[aspect]), (top[aspect], side - new_h[aspect])):
        wide = room > 1
        assert wide.mean() > 0.99
        assert (offset[wide] > 1).all() and (offset[wide] <= room[wide]).all()
        assert ((offset[~wide] >= room[~wide]) & (offset[~wide] < 1)).all()
        assert stats.kstest((offset[wide] - 1) / (room[wide] - 1), "uniform").pvalue > 0.01
    for i in range(0, 3000, 97):
        assert patches[i].tolist() == [int(left[i]), int(top[i]), int(left[i] + new_w[i]), int(top[i] + new_h[i])]


# ------------------------------------------------------------------------------------------------- draw ranges


def test_photometric_draws_ranges_and_probabilities():
    n = 4000
    draws = [draw_photometric() for _ in range(n)]
    for key, (low, high) in {
        "brightness": (-32, 32),
        "contrast": (0.5, 1.5),
        "saturation": (0.5, 1.5),
        "hue": (-18, 18),
    }.items():
        values = np.array([d[key] for d in draws if d[key] is not None])
        assert _binomial_ok(len(values), n), key
        assert values.min() >= low and values.max() <= high, key
        assert stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue > 0.01, key
    assert _binomial_ok(sum(d["contrast_first"] for d in draws), n)
    permutations = [d["permutation"] for d in draws if d["permutation"] is not None]
    assert _binomial_ok(len(permutations), n)
    counts = [permutations.count(p) for p in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]]
    assert sum(counts) == len(permutations)
    assert stats.chisquare(counts).pvalue > 0.01


def test_expand_draws():
    n, side = 4000, 100_000
    draws = [draw_expand(side, side) for _ in range(n)]
    drawn = [d for d in draws if d is not None]
    assert _binomial_ok(len(drawn), n)
    ratio, left, top = (np.array(v, dtype=np.float64) for v in zip(*drawn))
    assert stats.kstest(ratio, stats.uniform(1, 3).cdf).pvalue > 0.01
    for offset in (left, top):  # int(uniform(0, side * (ratio - 1))): the truncation is negligible at this side
        assert stats.kstest(offset / (side * (ratio - 1)), "uniform").pvalue > 0.01
    for _ in range(500):  # small images: the image always fits in the canvas
        ratio_, left_, top_ = draw_expand(7, 5) or (1.0, 0, 0)
        assert 0 <= left_ and left_ + 5 <= int(5 * ratio_) and 0 <= top_ and top_ + 7 <= int(7 * ratio_)


def test_flip_probability_and_field():
    flips = []
    for seed in range(2000):
        _seed(seed)  # no boxes: no crop loop, the flip follows the expand draws
        draws, _, _ = draw_authors(30, 40, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
        flips.append(draws.flip)
    assert _binomial_ok(sum(flips), len(flips))
    assert AuthorsDraws(20, 30).field == (0, 0, 30, 20)
    assert AuthorsDraws(20, 30, expand=(2.0, 5, 7)).field == (-5, -7, 55, 33)
    assert AuthorsDraws(20, 30, expand=(2.0, 5, 7), crop=(10, 12, 30, 40)).field == (5, 5, 25, 33)


# --------------------------------------------------------------------------------------------------------- HSV


def test_hsv_matches_colorsys():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, 1, 500, generator=generator) * 255
    pixels[:, 0, :10] = torch.tensor([0.0, 0.5, 17, 128, 255, 255, 0, 0, 255, 40]).expand(3, 10)  # greys
    pixels[:, 0, 10:13] = torch.tensor([[255.0, 0, 0], [0, 255, 0], [0, 0, 255]]).T  # primaries
    hsv = rgb_to_hsv(pixels)
    for i in range(pixels.shape[-1]):
        r, g, b = pixels[:, 0, i].tolist()
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        dh = abs(hsv[0, 0, i].item() - 360 * h)
        assert min(dh, 360 - dh) < 1e-3
        assert hsv[1, 0, i].item() == pytest.approx(s, abs=1e-5)
        assert hsv[2, 0, i].item() == pytest.approx(v, abs=1e-4)
        expected = colorsys.hsv_to_rgb(hsv[0, 0, i].item() / 360, hsv[1, 0, i].item(), hsv[2, 0, i].item())
        np.testing.assert_allclose(hsv_to_rgb(hsv[:, :, i : i + 1])[:, 0, 0].numpy(), expected, atol=2e-3)
    torch.testing.assert_close(hsv_to_rgb(hsv), pixels, atol=1e-3, rtol=0)


@pytest.mark.parametrize(("hue", "shift", "wrapped"), [(350, 18, 8), (5, -18, 347)])
def test_hue_shift_wraps_at_360(hue, shift, wrapped):
    pixel = torch.tensor(colorsys.hsv_to_rgb(hue / 360, 0.8, 200.0)).view(3, 1, 1)
    out = photometric(pixel, AuthorsDraws(1, 1, hue=float(shift)))
    np.testing.assert_allclose(out.flatten().numpy(), colorsys.hsv_to_rgb(wrapped / 360, 0.8, 200.0), atol=1e-3)


def test_negative_pixels_come_back_as_opencv_makes_them():
    """Brightness -32 on (10, 20, 5) gives (-22, -12, -27); OpenCV's float HSV then has V = -12, S = 15 / |V| =
    1.25, H = 120 + 60 (-27 + 22) / 15 = 100, and back (sector 1, f = 2/3): (V(1 - S f), V, V(1 - S)) = (-2, -12, 3)."""
    pixel = torch.tensor([10.0, 20, 5]).view(3, 1, 1)
    out = photometric(pixel, AuthorsDraws(1, 1, brightness=-32.0))
    np.testing.assert_allclose(out.flatten().numpy(), [-2, -12, 3], atol=1e-4)


def test_photometric_steps_by_hand():
    """Brightness +10, contrast x1.5 first, channels (2, 0, 1), on a grey pixel (HSV steps leave greys alone)."""
    pixel = torch.tensor([100.0, 100, 100]).view(3, 1, 1)
    draws = AuthorsDraws(1, 1, brightness=10.0, contrast_first=True, contrast=1.5, saturation=1.4, hue=9.0)
    np.testing.assert_allclose(photometric(pixel, draws).flatten().numpy(), [165, 165, 165], atol=1e-3)
    pixel = torch.tensor([10.0, 20, 30]).view(3, 1, 1)
    out = photometric(pixel, AuthorsDraws(1, 1, contrast=2.0, permutation=(2, 0, 1)))
    np.testing.assert_allclose(out.flatten().numpy(), [60, 20, 40], atol=1e-3)


# ------------------------------------------------------------------------------------------------ resize, flip


@pytest.mark.parametrize("size", [300, 96, 40])
def test_resample_equals_interpolate(size):
    """Bit-equal to F.interpolate for outputs over 64 pixels wide (the CPU kernel's FMA rounding reproduced);
    narrower outputs take another loop of the kernel, one float32 rounding apart."""
    generator = torch.Generator().manual_seed(size)
    canvas = torch.rand(2, 3, 120, 170, generator=generator) * 255
    fields = torch.tensor([[3, 5, 160, 118], [40, 20, 70, 50]])
    out = resample_fields(canvas, fields, size)
    for i, (x0, y0, x1, y1) in enumerate(fields.tolist()):
        expected = F.interpolate(
            canvas[i : i + 1, :, y0:y1, x0:x1], size=(size, size), mode="bilinear", align_corners=False, antialias=False
        )[0]
        if size > 64:
            assert torch.equal(out[i], expected)
        else:
            torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)


def test_flip_boxes_by_hand():
    boxes = np.array([[10, 5, 19, 25], [0, 0, 299, 299]], dtype=np.float32)
    assert flip_boxes(boxes, 300).tolist() == [[280, 5, 289, 25], [0, 0, 299, 299]]


def test_flipped_box_follows_its_pixel():
    """A one-pixel box on a bright pixel at x = 7 of a 20-pixel-wide image lands with it on x = 20 - 7 - 1."""
    image = torch.zeros(3, 20, 20, dtype=torch.uint8)
    image[:, 3, 7] = 255
    for seed in range(200):
        _seed(seed)
        draws, boxes, _ = draw_authors(20, 20, torch.tensor([[7.0, 3, 7, 3]]), torch.tensor([1]), size=20)
        if draws.flip and draws.expand is None and draws.crop is None:
            break
    else:
        raise AssertionError("no seed drew a flip alone")
    assert boxes.tolist() == [[12, 3, 12, 3]]
    out = apply_authors(image, AuthorsDraws(20, 20, flip=True), size=20, mean=(0, 0, 0), std=STD_255)
    assert out.sum(0).flatten().argmax().item() == 3 * 20 + 12


# --------------------------------------------------------------------------------------------- boxes, transforms


def _boxes_by_hand(draws: AuthorsDraws, boxes, size):
    """The output boxes recomputed from the draws, box by box, in float64."""
    left, top = draws.expand[1:] if draws.expand else (0, 0)
    canvas_h, canvas_w = draws.canvas
    x1p, y1p, x2p, y2p = draws.crop or (0, 0, canvas_w, canvas_h)
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        x1, y1, x2, y2 = x1 + left, y1 + top, x2 + left, y2 + top
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if draws.crop and not (x1p < cx < x2p and y1p < cy < y2p):
            continue
        box = [max(x1, x1p) - x1p, max(y1, y1p) - y1p, min(x2, x2p) - x1p, min(y2, y2p) - y1p]
        sx, sy = size / (x2p - x1p), size / (y2p - y1p)
        box = [min(max(v * s, 0), size - 1) for v, s in zip(box, (sx, sy, sx, sy))]
        if draws.flip:
            box = [size - box[2] - 1, box[1], size - box[0] - 1, box[3]]
        out.append(box)
    return np.array(out).reshape(-1, 4)


def test_output_boxes_follow_the_draws():
    rng = np.random.default_rng(1)
    seen = set()
    for seed in range(300):
        height, width, boxes = _random_case(rng)
        _seed(seed)
        draws, out, labels = draw_authors(height, width, boxes, torch.arange(len(boxes)), size=300)
        np.testing.assert_allclose(out.numpy(), _boxes_by_hand(draws, boxes, 300), atol=2e-3)
        assert len(labels) == len(out)
        seen.add((draws.expand is not None, draws.crop is not None, draws.flip))
    assert len(seen) == 8


def test_transform_and_drawer_draw_the_same():
    rng = np.random.default_rng(2)
    transform, drawer = AuthorsTrainTransform(size=24), AuthorsDrawer(size=24)
    for seed in range(200):
        height, width, boxes = _random_case(rng)
        image = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
        labels = torch.from_numpy(rng.integers(1, 21, len(boxes)))
        _seed(seed)
        pixels, target = transform(tv_tensors.Image(image), _target(height, width, boxes, labels))
        _seed(seed)
        draws, drawn_target = drawer(height, width, _target(height, width, boxes, labels))
        _seed(seed)
        direct, _, _ = draw_authors(height, width, boxes, labels, size=24)
        assert draws == direct
        assert torch.equal(target["boxes"], drawn_target["boxes"])
        assert torch.equal(target["labels"], drawn_target["labels"])
        assert target["boxes"].canvas_size == (24, 24) and drawn_target["boxes"].canvas_size == (24, 24)
        assert isinstance(pixels, tv_tensors.Image) and pixels.shape == (3, 24, 24)
        assert torch.equal(pixels.as_subclass(torch.Tensor), apply_authors(image, draws, 24))


def test_no_boxes_no_crop():
    draws, boxes, labels = draw_authors(30, 30, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert draws.crop is None and boxes.shape == (0, 4) and labels.shape == (0,)


# -------------------------------------------------------------------------------------------------- pixels


def test_expand_canvas_is_the_mean_and_normalizes_to_zero():
    image = torch.full((3, 10, 10), 255, dtype=torch.uint8)
    draws = AuthorsDraws(10, 10, expand=(3.5, 12, 2), crop=(0, 15, 10, 30))  # the crop misses the image
    out = apply_authors(image, draws, size=16)
    assert out.abs().max() < 1e-3
    batch = apply_authors_batch([image], [draws], size=16)
    assert batch.abs().max() < 1e-3


def _hand_draws():
    """Fields across every image border, inside it, upscaled and downscaled, with all photometric steps."""
    every = dict(brightness=-20.0, contrast=1.3, saturation=0.7, hue=-11.0, permutation=(1, 2, 0))
    return [
        AuthorsDraws(40, 50, expand=(2.5, 30, 20), crop=(25, 15, 70, 50), flip=True, **every),  # left and top edges
        AuthorsDraws(45, 35, expand=(3.0, 10, 40), crop=(30, 70, 60, 110)),  # right and bottom edges
        AuthorsDraws(30, 60, expand=(1.7, 20, 5)),  # the whole canvas, downscaled
        AuthorsDraws(64, 48, crop=(5, 9, 20, 30), contrast_first=True, contrast=0.6, hue=17.5),  # inside, upscaled
        AuthorsDraws(25, 25, brightness=31.0, saturation=1.5, flip=True),  # nothing geometric
        AuthorsDraws(50, 41, expand=(4.0, 100, 120), crop=(95, 110, 150, 180), permutation=(2, 1, 0)),
    ]


@pytest.mark.parametrize("size", [80, 48])
def test_batch_equals_reference(size):
    generator = torch.Generator().manual_seed(size)
    rng = np.random.default_rng(size)
    draws = _hand_draws()
    for seed in range(6):
        height, width, boxes = _random_case(rng)
        _seed(seed)
        draws.append(draw_authors(height, width, boxes, torch.arange(len(boxes)), size=size)[0])
    images = [torch.randint(0, 256, (3, d.height, d.width), dtype=torch.uint8, generator=generator) for d in draws]
    batch = apply_authors_batch(images, draws, size=size, mean=(0, 0, 0), std=STD_255)
    reference = torch.stack(
        [apply_authors(i, d, size=size, mean=(0, 0, 0), std=STD_255) for i, d in zip(images, draws)]
    )
    assert (batch - reference).abs().max() <= BATCH_TOLERANCE
    # authors' normalization and float [0, 1] input give the same agreement
    floats = [i.float() / 255 for i in images]
    batch = apply_authors_batch(floats, draws, size=size)
    reference = torch.stack([apply_authors(i, d, size=size) for i, d in zip(floats, draws)])
    assert (batch - reference).abs().max() <= BATCH_TOLERANCE


def test_batch_border_pixels_blend_with_the_fill():
    """Upscaling an image's right edge inside a canvas: the output column between its last pixel and the fill is
    their bilinear mix, in both paths (checked against the reference's canvas + F.interpolate)."""
    image = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    draws = AuthorsDraws(4, 4, expand=(2.0, 0, 0), crop=(2, 0, 6, 4))  # canvas 8 x 8: image columns 2, 3, fill 4, 5
    reference = apply_authors(image, draws, size=8, mean=(0.4, 0.4, 0.4), std=STD_255)
    batch = apply_authors_batch([image], [draws], size=8, mean=(0.4, 0.4, 0.4), std=STD_255)[0]
    fill = 0.4 * 255
    column = F.interpolate(torch.tensor([[[[200.0, 200, fill, fill]]]]), size=(1, 8), mode="bilinear")[0, 0, 0]
    np.testing.assert_allclose(reference[0, 0].numpy(), (column - fill).numpy(), atol=1e-3)
    torch.testing.assert_close(batch, reference, atol=BATCH_TOLERANCE, rtol=0)
