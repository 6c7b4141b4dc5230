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
