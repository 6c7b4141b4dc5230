"""FSSD, DSSD and RefineDet: shapes, prior counts, a learning step, parameter counts derived by hand."""

import pytest
import torch
import torchvision

from scbloss.detection import MultiBoxLoss, postprocess
from scbloss.detection.criterion import total_loss
from scbloss.models import build_criterion, build_model

PRIORS = {"fssd300": 8732, "fssd512": 24564, "dssd321": 18312, "dssd513": 45752, "refinedet320": 6375}
SIZES = {"fssd300": 300, "fssd512": 512, "dssd321": 321, "dssd513": 513, "refinedet320": 320}
MAPS = {
    "fssd300": [38, 19, 10, 5, 3, 1],
    "fssd512": [64, 32, 16, 8, 4, 2, 1],
    "dssd321": [41, 21, 11, 6, 3, 1],
    "dssd513": [65, 33, 17, 9, 5, 3, 1],
    "refinedet320": [40, 20, 10, 5],
}
TARGETS = [
    {"boxes": torch.tensor([[0.1, 0.1, 0.45, 0.6], [0.6, 0.62, 0.7, 0.7]]), "labels": torch.tensor([1, 3])},
    {"boxes": torch.tensor([[0.5, 0.3, 0.95, 0.9]]), "labels": torch.tensor([2])},
]


def conv(cin, cout, k=3, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def bn(c):
    return 2 * c


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_shapes_and_prior_counts(name):
    model = build_model(name, num_classes=4, width=0.125, dataset="coco")
    assert model.priors.shape == (PRIORS[name], 4)
    size = SIZES[name]
    outputs = model(torch.randn(2, 3, size, size))
    assert outputs[0].shape == (2, PRIORS[name], 4) and outputs[-1].shape == (2, PRIORS[name], 4)
    if name == "refinedet320":
        assert outputs[1].shape == (2, 6375, 2) and outputs[2].shape == (2, 6375, 4)
    else:
        assert outputs[1].shape == (2, PRIORS[name], 4)
        model.eval()
        assert [f.shape[-1] for f in model.features(torch.zeros(1, 3, size, size))] == MAPS[name]


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_a_small_gradient_step_lowers_the_loss_on_a_fixed_batch(name):
    """Gradients reach every loss term: a step of 1e-4 along them lowers the loss (first order; BatchNorm in eval
    mode so the step is the only change between the two evaluations)."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, width=0.125, dataset="coco").eval()
    criterion = build_criterion(name, "scb")
    images = torch.randn(2, 3, SIZES[name], SIZES[name])

    def loss_value():
        return total_loss(criterion(model(images), model, TARGETS))

    first = loss_value()
    first.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= 1e-4 * parameter.grad / max(1.0, float(torch.linalg.vector_norm(parameter.grad)))
    with torch.no_grad():
        assert loss_value().item() < first.item()


def _vgg_trunk(fc_kernel=3):
    channels = [
        (3, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ]
    return sum(conv(a, b) for a, b in channels) + conv(512, 1024, fc_kernel) + conv(1024, 1024, 1)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_fssd300_parameter_count_by_hand():
    """Caffe FSSD fssd_pascal.py L20-64 and PytorchSSD FSSD_vgg.py L170-192, 214-216: SSD's conv6_1-conv7_2, the
    three 1x1 reductions to 256, the fusion's BatchNorm, a pyramid of 512, 512, 256, 256, 256, 256 without one."""
    classes, per_loc = 21, [6, 6, 6, 6, 4, 4]
    extras = conv(1024, 256, 1) + conv(256, 512) + conv(512, 128, 1) + conv(128, 256)
    fusion = conv(512, 256, 1) + conv(1024, 256, 1) + conv(256, 256, 1) + bn(768)
    pyramid_channels = [(768, 512), (512, 512), (512, 256), (256, 256), (256, 256), (256, 256)]
    pyramid = sum(conv(a, b) for a, b in pyramid_channels)
    heads = sum(conv(c, n * 4) + conv(c, n * classes) for c, n in zip([512, 512, 256, 256, 256, 256], per_loc))
    assert _count(build_model("fssd300", classes)) == _vgg_trunk() + extras + fusion + pyramid + heads


def test_refinedet320_parameter_count_by_hand():
    classes, sources = 21, [512, 512, 1024, 512]
    extra = conv(1024, 256, 1) + conv(256, 512) + 2 * 512  # conv6_1, conv6_2, two L2Norm scales
    arm = sum(conv(c, 3 * 4) + conv(c, 3 * 2) for c in sources)
    tcb = sum(conv(c, 256) + conv(256, 256) + conv(256, 256) for c in sources) + 3 * (256 * 256 * 4 + 256)
    odm = 4 * (conv(256, 3 * 4) + conv(256, 3 * classes))
    assert _count(build_model("refinedet320", classes)) == _vgg_trunk() + extra + arm + tcb + odm


@pytest.mark.slow
def test_dssd321_parameter_count_by_hand():
    classes, per_loc = 81, 8
    model = build_model("dssd321", classes)
    resnet = _count(torchvision.models.resnet101()) - (2048 * 1000 + 1000)  # without its classifier
    extras = (
        conv(2048, 256, 1)
        + conv(256, 512)
        + conv(512, 256, 1)
        + conv(256, 512)
        + conv(512, 128, 1)
        + conv(128, 256)
        + conv(256, 128, 1)
        + conv(128, 256)
    )
    ssd_channels = [512, 2048, 512, 512, 256, 256]
    deconv = sum(
        (256 if i == 4 else 512) * 512 * 4
        + 512
        + conv(512, 512)
        + bn(512)  # up: deconv 2x2, conv, BN
        + conv(ssd_channels[i], 512)
        + bn(512)
        + conv(512, 512)
        + bn(512)  # lateral: conv BN ReLU conv BN
        for i in range(5)
    )
    predict_in = [512] * 5 + [256]
    predict = sum(conv(c, 256, 1) + conv(256, 256, 1) + conv(256, 1024, 1) + conv(c, 1024, 1) for c in predict_in)
    heads = 6 * (conv(1024, per_loc * 4) + conv(1024, per_loc * classes))
    assert _count(model.trunk) == resnet
    assert _count(model) == resnet + extras + deconv + predict + heads


@pytest.mark.slow
def test_resnet101_weights_load_into_the_dssd_trunk(tmp_path):
    state = torchvision.models.resnet101().state_dict()
    torch.save(state, tmp_path / "r101.pth")
    model = build_model(
        "dssd321", 81, pretrained_backbone="resnet101_imagenet1k_v1", backbone_file=str(tmp_path / "r101.pth")
    )
    assert torch.equal(model.trunk.layer3[22].conv2.weight, state["layer3.22.conv2.weight"])
    with pytest.raises(ValueError, match="need width=1.0"):
        build_model(
            "dssd321",
            81,
            width=0.5,
            pretrained_backbone="resnet101_imagenet1k_v1",
            backbone_file=str(tmp_path / "r101.pth"),
        )


def test_postprocessing_is_ssds():
    model = build_model("fssd300", 4, width=0.125).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 300, 300))
    loc, conf, priors = model.detection_inputs(outputs)
    assert priors is model.priors and loc is outputs[0] and conf is outputs[1]
    ours = postprocess(loc, conf, priors)[0]
    assert len(ours["scores"]) <= 200 and (ours["scores"][:-1] >= ours["scores"][1:]).all()


def test_refinedet_rejected_anchors_never_detect():
    model = build_model("refinedet320", 4, width=0.125).eval()
    arm_loc = torch.zeros(1, 6375, 4)
    arm_conf = torch.zeros(1, 6375, 2)
    arm_conf[0, :100, 0] = 10.0  # the ARM is sure the first 100 anchors are background
    odm_conf = torch.zeros(1, 6375, 4)
    odm_conf[0, :, 1] = 5.0  # the ODM would call every anchor class 1
    loc, conf, priors = model.detection_inputs((arm_loc, arm_conf, torch.zeros(1, 6375, 4), odm_conf))
    assert torch.allclose(priors[0], model.priors, atol=1e-6)  # zero regression leaves the anchors in place
    probabilities = conf.softmax(-1)
    assert (probabilities[0, :100, 1:] == 0).all() and (probabilities[0, 100:, 1] > 0.9).all()


def test_refinedet_loss_arm_only_or_both_modules():
    torch.manual_seed(1)
    model = build_model("refinedet320", 4, width=0.125)
    outputs = tuple(o.detach() for o in model(torch.randn(2, 3, 320, 320)))
    arm_only = build_criterion("refinedet320", "scb", "arm")(outputs, model, TARGETS)
    both = build_criterion("refinedet320", "scb", "arm_odm")(outputs, model, TARGETS)
    objectness = [{"boxes": t["boxes"], "labels": torch.ones_like(t["labels"])} for t in TARGETS]
    arm = MultiBoxLoss("scb")(outputs[0], outputs[1], model.priors, objectness)
    assert arm_only["loss_arm_cls"] == pytest.approx(arm["loss_cls"].item())
    assert both["loss_arm_cls"] == pytest.approx(arm["loss_cls"].item())
    rejected = outputs[1].softmax(-1)[..., 1] <= 0.01
    refined = model.refined_priors(outputs[0])
    for weighting, losses in (("none", arm_only), ("scb", both)):
        odm = MultiBoxLoss(weighting)(outputs[2], outputs[3], refined, TARGETS, not_negative=rejected)
        assert losses["loss_odm_cls"].item() == pytest.approx(odm["loss_cls"].item(), rel=1e-6)
        assert losses["loss_odm_loc"].item() == pytest.approx(odm["loss_loc"].item(), rel=1e-6)
    assert total_loss(arm_only).item() == pytest.approx(
        sum(arm_only[k].item() for k in ("loss_arm_cls", "loss_arm_loc", "loss_odm_cls", "loss_odm_loc"))
    )
    with pytest.raises(ValueError, match="refinedet320: no variant 'odm' \\(its variants are arm, arm_odm\\)"):
        build_criterion("refinedet320", "scb", "odm")
    with pytest.raises(ValueError, match="ssd300: no variant 'arm' \\(it has no variants\\)"):
        build_criterion("ssd300", "scb", "arm")


def test_negatives_the_arm_rejects_are_not_mined():
    priors = torch.tensor([[0.0, 0.0, 0.1, 0.1]] + [[0.5 + 0.01 * i, 0.5, 0.6 + 0.01 * i, 0.6] for i in range(10)])
    target = [{"boxes": torch.tensor([[0.0, 0.0, 0.1, 0.1]]), "labels": torch.tensor([1])}]
    conf = torch.zeros(1, 11, 2)
    conf[0, 0] = torch.tensor([0.0, 10.0])
    conf[0, 1:, 1] = torch.arange(10, dtype=torch.float32)  # negative i has CE log(1 + e^i)
    excluded = torch.zeros(1, 11, dtype=torch.bool)
    excluded[0, 10] = True  # the hardest negative (CE of logit 9) may not be mined
    out = MultiBoxLoss("none")(torch.zeros(1, 11, 4), conf, priors, target, not_negative=excluded)
    ce = lambda z: torch.log1p(torch.exp(torch.tensor(z))).item()  # noqa: E731
    assert out["loss_cls"].item() == pytest.approx(ce(-10.0) + ce(8.0) + ce(7.0) + ce(6.0), rel=1e-5)
