import math

import pytest
import torch

from scbloss.detection import MultiBoxLoss, PriorLayout, generate_priors
from scbloss.detection.loss import hard_negative_mask

SMALL_LAYOUT = PriorLayout(100, (4, 2), (25.0, 50.0), (20.0, 50.0), (50.0, 90.0), ((2,), (2, 3)))  # 88 priors
NUM_CLASSES = 4


def _targets():
    return [
        {"boxes": torch.zeros(0, 4, dtype=torch.float64), "labels": torch.zeros(0, dtype=torch.long)},
        {
            "boxes": torch.tensor([[0.05, 0.1, 0.3, 0.45], [0.5, 0.55, 0.62, 0.7]], dtype=torch.float64),
            "labels": torch.tensor([2, 4]),
        },
        {
            "boxes": torch.tensor(
                [
                    [0.0, 0.0, 1.0, 0.95],  # large: many positives, so 3 * P exceeds the negatives left
                    [0.4, 0.4, 0.47, 0.46],  # small
                    [0.7, 0.1, 0.95, 0.3],
                    [0.1, 0.6, 0.4, 0.98],
                    [0.12, 0.62, 0.38, 0.9],
                ],
                dtype=torch.float64,
            ),
            "labels": torch.tensor([1, 3, 3, 2, 1]),
        },
    ]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(loc, conf, priors, targets, weight_of, apply_to):
    """The paper's loss restated loop by loop in float64, as ssd.pytorch computes SSD's."""
    total_cls = total_loc = 0.0
    total_pos = 0
    pri = priors.tolist()
    for b, target in enumerate(targets):
        gts, labels = target["boxes"].tolist(), target["labels"].tolist()
        matched = [-1] * len(pri)
        for a, p in enumerate(pri):
            if gts:
                ious = [_iou(g, p) for g in gts]
                best = max(range(len(gts)), key=lambda g: (ious[g], -g))
                if ious[best] >= 0.5:
                    matched[a] = best
        for g, box in enumerate(gts):  # sequential: a later ground truth overwrites an earlier one
            ious = [_iou(box, p) for p in pri]
            matched[max(range(len(pri)), key=lambda a: (ious[a], -a))] = g
        counts = [matched.count(g) for g in range(len(gts))]
        ce = []
        for a in range(len(pri)):
            logits = conf[b, a].tolist()
            log_z = math.log(sum(math.exp(v) for v in logits))
            target_class = labels[matched[a]] if matched[a] >= 0 else 0
            ce.append(log_z - logits[target_class])
        positives = [a for a in range(len(pri)) if matched[a] >= 0]
        negatives = sorted((a for a in range(len(pri)) if matched[a] < 0), key=lambda a: -ce[a])
        num_neg = min(3 * len(positives), len(pri) - len(positives))
        total_pos += len(positives)
        total_cls += sum(ce[a] for a in negatives[:num_neg])
        for a in positives:
            w = weight_of(counts[matched[a]])
            total_cls += w * ce[a]
            g, p = gts[matched[a]], pri[a]
            pcx, pcy, pw, ph = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2, p[2] - p[0], p[3] - p[1]
            gcx, gcy, gw, gh = (g[0] + g[2]) / 2, (g[1] + g[3]) / 2, g[2] - g[0], g[3] - g[1]
            enc = [(gcx - pcx) / (0.1 * pw), (gcy - pcy) / (0.1 * ph), math.log(gw / pw) / 0.2, math.log(gh / ph) / 0.2]
            smooth = 0.0
            for pred, t in zip(loc[b, a].tolist(), enc):
                d = abs(pred - t)
                smooth += 0.5 * d * d if d < 1 else d - 0.5
            total_loc += smooth * (w if apply_to == "cls+loc" else 1.0)
    n = max(1, total_pos)
    return total_cls / n, total_loc / n, total_pos


WEIGHT_FORMS = {
    "none": lambda m: 1.0,
    "inv_log1p": lambda m: 1.0 / (math.log(m) + 1.0),
    "inv_sqrt": lambda m: m**-0.5,
    "inv": lambda m: 1.0 / m,
    "scb": lambda m: 3.0 * (math.log(m) + 1.0) / m,
}


@pytest.mark.parametrize("apply_to", ["cls", "cls+loc"])
@pytest.mark.parametrize("weighting", sorted(WEIGHT_FORMS))
def test_loss_equals_float64_restatement(weighting, apply_to):
    priors = generate_priors(SMALL_LAYOUT, dtype=torch.float64)
    loc = torch.randn(3, len(priors), 4, dtype=torch.float64)
    conf = torch.randn(3, len(priors), NUM_CLASSES + 1, dtype=torch.float64)
    out = MultiBoxLoss(weighting=weighting, apply_to=apply_to)(loc, conf, priors, _targets())
    ref_cls, ref_loc, ref_pos = _reference(loc, conf, priors, _targets(), WEIGHT_FORMS[weighting], apply_to)
    assert int(out["num_pos"]) == ref_pos
    assert out["loss_cls"].item() == pytest.approx(ref_cls, rel=1e-9)
    assert out["loss_loc"].item() == pytest.approx(ref_loc, rel=1e-9)


@pytest.mark.slow
def test_unweighted_loss_equals_torchvision_ssd_compute_loss():
    from torchvision.models.detection import ssd300_vgg16

    from scbloss.detection import match

    priors = generate_priors(SMALL_LAYOUT)
    targets = [{k: v.float() if k == "boxes" else v for k, v in t.items()} for t in _targets()]
    loc = torch.randn(3, len(priors), 4)
    conf = torch.randn(3, len(priors), NUM_CLASSES + 1)
    ours = MultiBoxLoss(weighting="none")(loc, conf, priors, targets)

    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
    matched = [match(t["boxes"], priors) for t in targets]
    theirs = tv.compute_loss(targets, {"bbox_regression": loc, "cls_logits": conf}, [priors] * 3, matched)
    assert ours["loss_loc"].item() == pytest.approx(theirs["bbox_regression"].item(), rel=1e-5)
    assert ours["loss_cls"].item() == pytest.approx(theirs["classification"].item(), rel=1e-5)


def test_hard_negative_mask_takes_the_largest_per_image():
    loss = torch.tensor([[0.1, 5.0, float("-inf"), 3.0, 0.2], [9.0, 1.0, 2.0, 3.0, 4.0]])
    mask = hard_negative_mask(loss, torch.tensor([2, 0]))
    assert mask.tolist() == [[False, True, False, True, False], [False] * 5]


def test_hard_negative_count_is_three_per_positive():
    """One object matched by exactly one prior: exactly 3 negatives (the most confident background errors) count."""
    priors = torch.tensor([[0.0, 0.0, 0.1, 0.1]] + [[0.5 + 0.01 * i, 0.5, 0.6 + 0.01 * i, 0.6] for i in range(10)])
    target = [{"boxes": torch.tensor([[0.0, 0.0, 0.1, 0.1]]), "labels": torch.tensor([1])}]
    conf = torch.zeros(1, 11, 2)
    conf[0, 0] = torch.tensor([0.0, 10.0])  # the positive: almost no loss
    conf[0, 1:, 1] = torch.arange(10, dtype=torch.float32)  # negative i has CE = log(1 + e^i) - 0
    out = MultiBoxLoss(weighting="none")(torch.zeros(1, 11, 4), conf, priors, target)
    ce = lambda z: math.log(1 + math.exp(z))  # noqa: E731
    expected = ce(-10.0) + ce(9) + ce(8) + ce(7)
    assert out["num_pos"].item() == 1
    assert out["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_images_without_objects():
    priors = generate_priors(SMALL_LAYOUT)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    out = MultiBoxLoss()(torch.randn(2, 88, 4, requires_grad=True), torch.randn(2, 88, 5), priors, empty)
    assert out["num_pos"].item() == 0
    assert out["loss_cls"].item() == 0.0 and out["loss_loc"].item() == 0.0


def test_bad_inputs_are_named():
    priors = generate_priors(SMALL_LAYOUT)
    good = [{"boxes": torch.tensor([[0.1, 0.1, 0.4, 0.4]]), "labels": torch.tensor([1])}]
    loss = MultiBoxLoss()
    with pytest.raises(ValueError, match=r"loc_pred must be \[B, 88, 4\]"):
        loss(torch.zeros(1, 87, 4), torch.zeros(1, 88, 5), priors, good)
    with pytest.raises(ValueError, match="conf_pred must be"):
        loss(torch.zeros(1, 88, 4), torch.zeros(2, 88, 5), priors, good)
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        loss(torch.zeros(1, 88, 4), torch.zeros(1, 88, 5), priors, good * 2)
    with pytest.raises(ValueError, match=r"labels must lie in 1\.\.4 .*got 0\.\.0"):
        loss(
            torch.zeros(1, 88, 4),
            torch.zeros(1, 88, 5),
            priors,
            [{"boxes": good[0]["boxes"], "labels": torch.tensor([0])}],
        )
    with pytest.raises(ValueError, match=r"labels must lie in 1\.\.4 .*got 5\.\.5"):
        loss(
            torch.zeros(1, 88, 4),
            torch.zeros(1, 88, 5),
            priors,
            [{"boxes": good[0]["boxes"], "labels": torch.tensor([5])}],
        )
    with pytest.raises(ValueError, match=r"target 0: boxes must be \[G, 4\]"):
        loss(
            torch.zeros(1, 88, 4),
            torch.zeros(1, 88, 5),
            priors,
            [{"boxes": torch.zeros(4), "labels": torch.tensor([1])}],
        )
    with pytest.raises(ValueError, match="unknown weighting"):
        MultiBoxLoss(weighting="focal")
    with pytest.raises(ValueError, match="apply_to"):
        MultiBoxLoss(apply_to="loc")


@pytest.mark.parametrize("weighting", ["none", "scb"])
def test_mmdetections_normalizer_averages_groups_each_over_its_own_positives(weighting):
    """images_per_normalizer=3 over 6 images (the 3 test images twice, each holding an empty one): each group's
    loss over its own positives with an empty image counting 1 (mmdetection v1's max(positives, 1) per image), the
    two groups averaged; their sum-normalized loss would divide both groups' sum by all positives instead."""
    priors = generate_priors(SMALL_LAYOUT, dtype=torch.float64)
    loc = torch.randn(6, len(priors), 4, dtype=torch.float64)
    conf = torch.randn(6, len(priors), NUM_CLASSES + 1, dtype=torch.float64)
    targets = _targets() + _targets()[::-1]
    grouped = MultiBoxLoss(weighting=weighting, images_per_normalizer=3)(loc, conf, priors, targets)
    halves = [
        MultiBoxLoss(weighting=weighting, normalizer=lambda n: n + 1)(
            loc[i : i + 3], conf[i : i + 3], priors, targets[i : i + 3]
        )
        for i in (0, 3)
    ]
    for term in ("loss_cls", "loss_loc"):
        assert grouped[term].item() == pytest.approx((halves[0][term] + halves[1][term]).item() / 2, rel=1e-12)
    whole = MultiBoxLoss(weighting=weighting)(loc, conf, priors, targets)
    assert grouped["loss_cls"].item() != pytest.approx(whole["loss_cls"].item(), rel=1e-3)
