import dataclasses

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.ops import box_convert

from scbloss import detectors
from scbloss.detection import PriorLayout, generate_priors


@pytest.mark.parametrize(
    "model,dataset,count",
    [("ssd300", "voc", 8732), ("ssd300", "coco", 8732), ("ssd512", "voc", 24564), ("ssd512", "coco", 24564)],
)
def test_prior_counts(model, dataset, count):
    layout = detectors.get(model).layout(dataset)
    priors = generate_priors(layout)
    assert priors.shape == (count, 4)
    assert layout.num_priors() == count


def test_first_cell_of_ssd300_voc_by_hand():
    priors = generate_priors(detectors.get("ssd300").layout("voc"), dtype=torch.float64)
    cx = cy = 0.5 * 8 / 300
    small = 30 / 300
    large = (30 * 60) ** 0.5 / 300
    wide = (small * 2**0.5, small / 2**0.5)
    expected_cxcywh = torch.tensor(
        [[cx, cy, small, small], [cx, cy, large, large], [cx, cy, *wide], [cx, cy, wide[1], wide[0]]],
        dtype=torch.float64,
    )
    assert torch.allclose(priors[:4], box_convert(expected_cxcywh, "cxcywh", "xyxy"), atol=1e-12)
    # the second cell is one step (8 px) to the right
    assert torch.allclose(priors[4:8, [0, 2]] - priors[:4, [0, 2]], torch.full((4, 2), 8 / 300, dtype=torch.float64))


def test_ssd300_coco_equals_torchvision_anchors_as_sets():
    """Convention checked: width/height clipped to [0, 1], centres unclipped (torchvision's DefaultBoxGenerator)."""
    generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    images = torch.zeros(1, 3, 300, 300)
    maps = [torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]
    from torchvision.models.detection.image_list import ImageList

    anchors_px = generator(ImageList(images, [(300, 300)]), maps)[0]
    theirs = (anchors_px / 300).double()
    ours = generate_priors(detectors.get("ssd300").layout("coco"), dtype=torch.float64)

    def as_sorted_set(boxes):
        rounded = (boxes * 1e5).round()
        keys = rounded[:, 0] * 1e18 + rounded[:, 1] * 1e12 + rounded[:, 2] * 1e6 + rounded[:, 3]
        return rounded[keys.argsort()]

    assert ours.shape == theirs.shape == (8732, 4)
    assert torch.equal(as_sorted_set(ours), as_sorted_set(theirs))
    assert torch.allclose(ours, theirs, atol=1e-5)  # and in the same order


def test_clip_conventions_differ_only_on_border_centres():
    layout = detectors.get("ssd300").layout("coco")
    wh_only = generate_priors(layout, dtype=torch.float64)
    from dataclasses import replace

    full = generate_priors(replace(layout, clip="cxcywh"), dtype=torch.float64)
    differing = (wh_only - full).abs().amax(dim=1) > 1e-9
    assert int(differing.sum()) == 114
    centres = box_convert(wh_only, "xyxy", "cxcywh")[:, :2]
    assert bool(((centres > 1) | (centres < 0)).any(dim=1)[differing].all())


def test_layout_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="one entry per level"):
        PriorLayout(300, (38, 19), (8.0,), (30.0, 60.0), (60.0, 111.0), ((2,), (2,)))
    with pytest.raises(ValueError, match="no prior layout"):
        detectors.get("ssd300").layout("kitti")


def _authors(model, family):
    """The paper's released code's anchors (mmdetection v1.0's SSDHead) for a detector's prior sizes."""
    return dataclasses.replace(detectors.get(model).layout(family), clip="none", generator="mmdet_v1")


@pytest.mark.parametrize(
    "model,family,count",
    [("ssd300", "voc", 8732), ("ssd300", "coco", 8732), ("ssd512", "voc", 24564), ("ssd512", "coco", 24564)],
)
def test_the_authors_anchors_count_and_sizes(model, family, count):
    """mmdetection v1 derives its sizes from basesize_ratio_range (SCB_Loss's configs: VOC300 (0.2, 0.9), COCO300
    (0.15, 0.9), VOC512 (0.15, 0.9), COCO512 (0.1, 0.9)) plus a fixed first level; worked out here independently,
    they are the sizes our layouts already hold."""
    size, (low, high) = {
        ("ssd300", "voc"): (300, (20, 90)),
        ("ssd300", "coco"): (300, (15, 90)),
        ("ssd512", "voc"): (512, (15, 90)),
        ("ssd512", "coco"): (512, (10, 90)),
    }[(model, family)]
    levels = 6 if size == 300 else 7
    step = (high - low) // (levels - 2)
    ratios = list(range(low, high + 1, step))
    first = {(300, 15): (7, 15), (300, 20): (10, 20), (512, 10): (4, 10), (512, 15): (7, 15)}[(size, low)]
    min_sizes = [size * first[0] // 100] + [size * r // 100 for r in ratios]
    max_sizes = [size * first[1] // 100] + [size * (r + step) // 100 for r in ratios]
    layout = _authors(model, family)
    assert layout.min_sizes == tuple(map(float, min_sizes)) and layout.max_sizes == tuple(map(float, max_sizes))
    assert generate_priors(layout).shape == (count, 4) == (layout.num_priors(), 4)


def test_the_authors_anchors_of_ssd300_voc_by_hand():
    """Whole-pixel boxes centred at (step - 1) / 2, with mmdetection's inclusive right/bottom pixel added."""
    pixels = (generate_priors(_authors("ssd300", "voc"), dtype=torch.float64) * 300).round(decimals=9)
    first_cell = [  # base 30, step 8, centre 3.5; large square 30 * sqrt(2) = 42.43 -> 3.5 -/+ 20.71 -> -17, 24
        [-11, -11, 19, 19],  # 3.5 -/+ 14.5 = -11, 18 (+1)
        [-17, -17, 25, 25],
        [-17, -7, 25, 15],  # wide: h = 30 / sqrt(2) = 21.21 -> 3.5 -/+ 10.11 -> -7 (-6.61), 14 (13.61)
        [-7, -17, 15, 25],  # tall
    ]
    assert pixels[:4].tolist() == first_cell
    assert pixels[4].tolist() == [-3, -11, 27, 19]  # the next cell: one step (8 px) to the right
    last = pixels[-4:].tolist()  # the 1x1 map: base 264, large sqrt(264 * 315) = 288.4, centre 149.5
    assert last == [[18, 18, 282, 282], [6, 6, 294, 294], [-37, 57, 337, 243], [57, -37, 243, 337]]


def test_the_authors_anchors_are_never_clipped_where_ours_are():
    """The wide anchor of SSD300's last level is 373 px wide: the authors keep it so, ours clip it to the image."""
    authors = generate_priors(_authors("ssd300", "voc"), dtype=torch.float64)
    ours = generate_priors(detectors.get("ssd300").layout("voc"), dtype=torch.float64)
    assert authors.min() < 0 and authors.max() > 1
    assert (authors[-2, 2] - authors[-2, 0]).item() * 300 == pytest.approx(374)  # pixels -37..336
    assert (ours[-2, 2] - ours[-2, 0]).item() == pytest.approx(1.0)
    moved = (authors - ours).abs().mul(300).amax(dim=1)
    assert moved.median() > 0 and moved.max() == pytest.approx(37.0, abs=0.5)


def test_a_layout_with_the_authors_anchors_is_never_clipped():
    with pytest.raises(ValueError, match="never clipped"):
        dataclasses.replace(detectors.get("ssd300").layout("voc"), generator="mmdet_v1")


def test_in_the_authors_pixel_frame_an_exact_tie_goes_to_the_first_anchor():
    """mmdetection matches in pixels, where an object centred between two equal anchors overlaps both exactly
    equally and its first anchor wins; the loss frame of the authors' layout keeps that tie a tie."""
    from scbloss.detection.matcher import match
    from scbloss.detection.priors import priors_for_loss, targets_for_loss

    layout = _authors("ssd300", "voc")
    inclusive = torch.tensor([[0.0, 14.0, 3.0, 22.0]])  # pixels 0..3 x 14..22, overlapping two anchors equally
    target = targets_for_loss(layout, [{"boxes": inclusive / 300, "labels": torch.tensor([1])}])[0]
    assert torch.allclose(target["boxes"], torch.tensor([[0.0, 14.0, 4.0, 23.0]]))
    anchors = priors_for_loss(layout).double()
    exact = torch.tensor([[0.0, 14.0, 4.0, 23.0]], dtype=torch.float64)
    inter = (torch.minimum(exact[:, 2:], anchors[:, 2:]) - torch.maximum(exact[:, :2], anchors[:, :2])).clamp(min=0)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter.prod(1) / (area(exact) + area(anchors) - inter.prod(1))
    tied = (iou == iou.max()).nonzero().flatten()
    assert len(tied) >= 2 and iou.max() < 0.5  # only the forced best-anchor match
    matched = match(target["boxes"], priors_for_loss(layout))
    assert (matched >= 0).nonzero().flatten().tolist() == [tied[0].item()]  # normalized arithmetic picks another


def test_the_authors_detections_are_reported_inclusive():
    from scbloss.detection.priors import detections_from_priors_frame

    boxes = torch.tensor([[0.1, 0.2, 0.5, 1.0]])
    reported = detections_from_priors_frame(_authors("ssd300", "voc"), boxes)
    assert torch.allclose(reported, torch.tensor([[0.1, 0.2, 0.5 - 1 / 300, 1 - 1 / 300]]))
    assert detections_from_priors_frame(detectors.get("ssd300").layout("voc"), boxes) is boxes


def test_a_detector_with_the_authors_anchors_trains_in_their_frame():
    from scbloss.detection import MultiBoxLoss
    from scbloss.detection.criterion import SingleShotCriterion
    from scbloss.detection.priors import priors_for_loss, targets_for_loss

    layout = _authors("ssd300", "voc")
    model = detectors.resolve(detectors.get("ssd300").network)(layout, 3, 0.125, True)
    assert torch.equal(model.loss_priors, priors_for_loss(layout)) and model.loss_priors.max() > 1
    targets = [{"boxes": torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.9]]), "labels": torch.tensor([1, 2])}]
    loc, conf = torch.randn(1, 8732, 4), torch.randn(1, 8732, 3)
    ours = SingleShotCriterion(weighting="scb")((loc, conf), model, targets)
    frame = MultiBoxLoss(weighting="scb")(loc, conf, priors_for_loss(layout), targets_for_loss(layout, targets))
    assert all(torch.equal(ours[key], frame[key]) for key in ("loss_cls", "loss_loc", "num_pos"))


def test_fssds_coco_layouts_are_caffe_fssds():
    """lzx1413/CAFFE_SSD@fssd fssd_coco.py / fssd_coco_512.py, worked out by hand: min_ratio 15, max_ratio 90 in
    steps of floor(75 / 4) = 18 (300) or floor(75 / 5) = 15 (512) percent, a 7% / 15% first level, SSD's ratios,
    steps of input / map (300 / 38 = 7.89...), no clipping."""
    fssd300, fssd512 = (detectors.get(name).layout("coco") for name in ("fssd300", "fssd512"))
    assert fssd300.min_sizes == (21.0, 45.0, 99.0, 153.0, 207.0, 261.0)
    assert fssd300.max_sizes == (45.0, 99.0, 153.0, 207.0, 261.0, 315.0)
    assert fssd300.steps[:2] == (300 / 38, 300 / 19) and fssd300.steps[2:] == (30.0, 60.0, 100.0, 300.0)
    assert fssd512.min_sizes == pytest.approx((35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8))
    assert fssd512.max_sizes == pytest.approx((76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6))
    assert fssd512.steps == (8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
    assert fssd300.clip == fssd512.clip == "none"
    assert (fssd300.num_priors(), fssd512.num_priors()) == (8732, 24564)
    assert generate_priors(fssd300).min() < 0  # the unclipped large square of the first level's corner cell
