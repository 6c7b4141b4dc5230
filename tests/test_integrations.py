"""The scale-balanced loss inside torchvision's SSD and RetinaNet: with weighting none their losses are
torchvision's to the bit; with scb they equal a fixture computed by hand."""

import math
import runpy
import sys

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import retinanet_resnet50_fpn, ssd300_vgg16
from torchvision.ops import sigmoid_focal_loss

from scbloss.integrations.torchvision import anchor_weights, scale_balanced

from conftest import REPO

TARGETS = [
    {"boxes": torch.tensor([[20.0, 30, 120, 150], [200, 210, 230, 236]]), "labels": torch.tensor([3, 1])},
    {"boxes": torch.tensor([[40.0, 40, 260, 280]]), "labels": torch.tensor([2])},
]


def _losses(model, images):
    torch.manual_seed(0)
    model.train()
    return model(images, TARGETS)


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["ssd", "retinanet"])
def test_weighting_none_gives_torchvisions_losses_exactly(builder):
    def build():
        torch.manual_seed(0)
        if builder == "ssd":
            return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=5)
        return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, min_size=256, max_size=256)

    images = list(torch.rand(2, 3, 300, 300, generator=torch.Generator().manual_seed(1)))
    theirs = _losses(build(), images)
    ours = _losses(scale_balanced(build(), weighting="none"), images)
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    weighted = _losses(scale_balanced(build(), weighting="scb"), images)
    assert not torch.equal(weighted["classification"], theirs["classification"])


def test_anchor_weights_count_the_anchors_matched_to_each_object():
    matched = torch.tensor([0, 0, 0, -1, 1, -2, -1])  # object 0: 3 anchors, object 1: one; -2 is ignored
    weights = anchor_weights(matched, 2, "scb", alpha=1.0, beta=3.0)
    w0, w1 = 3 * (math.log(3) + 1) / 3, 3 * (math.log(1) + 1) / 1
    assert weights.tolist() == pytest.approx([w0, w0, w0, 1, w1, 1, 1])


def _fixture(matched):
    """Twenty anchors in one image; object 0 on anchors 0-2 (M = 3), object 1 on anchor 4 (M = 1)."""
    logits = torch.randn(1, 20, 3, generator=torch.Generator().manual_seed(7)) * 2
    anchors = [torch.tensor([[0.0, 0, 10, 10]] * 20)]
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), "labels": torch.tensor([1, 2])}]
    return targets, {"cls_logits": logits, "bbox_regression": torch.zeros(1, 20, 4)}, anchors, [matched]


@pytest.mark.slow
def test_ssd_scb_loss_equals_the_hand_computed_fixture():
    model = scale_balanced(ssd300_vgg16(weights=None, weights_backbone=None, num_classes=3), weighting="scb")
    matched = torch.full((20,), -1)
    matched[[0, 1, 2]], matched[4] = 0, 1
    targets, outputs, anchors, matched = _fixture(matched)
    losses = model.compute_loss(targets, outputs, anchors, matched)
    labels = [1, 1, 1, 0, 2] + [0] * 15
    ce = [F.cross_entropy(outputs["cls_logits"][0, i][None], torch.tensor([c])).item() for i, c in enumerate(labels)]
    w0, w1 = math.log(3) + 1, 3.0  # beta (ln M + alpha) / M with alpha 1, beta 3
    negatives = sorted((ce[i] for i in range(20) if i not in (0, 1, 2, 4)), reverse=True)[:12]  # 3 per positive
    expected = (w0 * (ce[0] + ce[1] + ce[2]) + w1 * ce[4] + sum(negatives)) / 4
    assert losses["classification"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["bbox_regression"].item() == pytest.approx(0.0)  # boxes equal their anchors, zero regression


def test_retinanet_scb_loss_equals_the_hand_computed_fixture():
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    model = scale_balanced(model, weighting="inv_sqrt")
    matched = torch.full((20,), -1)
    matched[[0, 1, 2]], matched[4], matched[5] = 0, 1, -2  # anchor 5 lies between the thresholds: ignored
    targets, outputs, anchors, matched = _fixture(matched)
    losses = model.head.compute_loss(targets, outputs, anchors, matched)
    logits = outputs["cls_logits"][0]
    onehot = torch.zeros_like(logits)
    onehot[[0, 1, 2, 4], [1, 1, 1, 2]] = 1.0
    focal = sigmoid_focal_loss(logits, onehot, reduction="none").sum(1).tolist()
    weight = {0: 1 / math.sqrt(3), 1: 1 / math.sqrt(3), 2: 1 / math.sqrt(3), 4: 1.0}  # 1/sqrt(M)
    expected = sum(weight.get(i, 1.0) * focal[i] for i in range(20) if i != 5) / 4
    assert losses["classification"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_other_models_and_options_are_refused():
    with pytest.raises(TypeError, match="SSD or RetinaNet"):
        scale_balanced(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="unknown weighting 'sbc'"):
        scale_balanced(ssd300_vgg16(weights=None, weights_backbone=None, num_classes=3), weighting="sbc")
    with pytest.raises(ValueError, match="apply_to must be"):
        scale_balanced(ssd300_vgg16(weights=None, weights_backbone=None, num_classes=3), apply_to="loc")


@pytest.mark.slow
def test_the_retinanet_example_trains_on_the_toy_data(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["retinanet_scb.py", "--iterations", "2", "--data", str(tmp_path / "toy")])
    result = runpy.run_path(str(REPO / "docs" / "examples" / "retinanet_scb.py"), run_name="__main__")
    losses = result["history"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
