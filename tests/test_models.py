import pytest
import torch

from scbloss import detectors
from scbloss.detection import MultiBoxLoss, generate_priors
from scbloss.models import build_model


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.slow
def test_ssd300_parameter_count_equals_torchvision():
    from torchvision.models.detection import ssd300_vgg16

    ours = build_model("ssd300", num_classes=21)
    assert _params(ours) == 26_285_486
    assert _params(ours) == _params(ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21))


@pytest.mark.parametrize(
    "name,dataset,size,count",
    [("ssd300", "voc", 300, 8732), ("ssd300", "coco", 300, 8732), ("ssd512", "voc", 512, 24564)],
)
def test_forward_shapes_match_the_priors(name, dataset, size, count):
    model = build_model(name, num_classes=6, width=0.125, dataset=dataset).eval()
    assert torch.equal(model.priors, generate_priors(detectors.get(name).layout(dataset)))
    with torch.no_grad():
        loc, conf = model(torch.randn(2, 3, size, size))
    assert loc.shape == (2, count, 4) and conf.shape == (2, count, 6)
    sizes = [f.shape[-1] for f in model.features(torch.zeros(1, 3, size, size))]
    assert tuple(sizes) == detectors.get(name).layout(dataset).feature_maps


def test_width_keeps_the_layout_and_shrinks_channels():
    full, thin = build_model("ssd300", 21), build_model("ssd300", 21, width=0.25)
    assert torch.equal(full.priors, thin.priors)
    assert thin.trunk.features[0].out_channels == 16 and thin.trunk.fc7_channels == 256
    assert _params(thin) < _params(full) / 10


def test_gradients_reach_the_backbone():
    model = build_model("ssd300", num_classes=3, width=0.125)
    loc, conf = model(torch.randn(2, 3, 300, 300))
    targets = [
        {"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.6]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[0.5, 0.5, 0.9, 0.8], [0.05, 0.05, 0.1, 0.1]]), "labels": torch.tensor([2, 1])},
    ]
    losses = MultiBoxLoss()(loc, conf, model.priors, targets)
    (losses["loss_cls"] + losses["loss_loc"]).backward()
    first_conv = model.trunk.features[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert model.l2norm.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'yolo'"):
        build_model("yolo", 21)
    with pytest.raises(ValueError, match="counts the background"):
        build_model("ssd300", 1)
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 300, 300\]"):
        build_model("ssd300", 3, width=0.125)(torch.zeros(1, 3, 512, 512))
