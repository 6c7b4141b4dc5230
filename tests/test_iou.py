import pytest
import torch
from torchvision.ops import box_iou

from scbloss import detectors
from scbloss.detection import generate_priors
from scbloss.detection.iou import PriorIntervals


@pytest.mark.parametrize("model,dataset", [("ssd300", "voc"), ("ssd512", "coco")])
def test_interval_iou_equals_torchvision_box_iou_exactly(model, dataset):
    priors = generate_priors(detectors.get(model).layout(dataset))
    centre, size = torch.rand(50, 2), torch.rand(50, 2) * 0.7 + 0.005
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1).clamp(0, 1)
    intervals = PriorIntervals(priors)
    assert len(intervals.x1) < len(priors) / 10  # SSD priors share few distinct intervals
    assert torch.equal(intervals.iou(boxes), box_iou(boxes, priors))


def test_arbitrary_priors_and_empty_boxes():
    priors = torch.rand(40, 2).repeat(1, 2) + torch.tensor([0.0, 0.0, 0.1, 0.2])
    boxes = torch.rand(7, 2).repeat(1, 2) + torch.tensor([0.0, 0.0, 0.3, 0.1])
    assert torch.equal(PriorIntervals(priors).iou(boxes), box_iou(boxes, priors))
    assert PriorIntervals(priors).iou(torch.zeros(0, 4)).shape == (0, 40)


def test_cache_notices_a_modified_prior_tensor():
    priors = generate_priors(detectors.get("ssd300").layout("voc"))
    intervals = PriorIntervals(priors)
    assert intervals.describes(priors) and not intervals.describes(priors.clone())
    priors.mul_(1.0)
    assert not intervals.describes(priors)
