"""The fixed-shape loss (padded targets, matching and mining with no data-dependent shape) equals the loss it replaced
(tests/reference_multibox.py) on the same batches, and compiles with the network into one graph."""

import functools
import math

import pytest
import torch
from reference_multibox import ReferenceMultiBoxLoss

from scbloss import detectors
from scbloss.detection.box_coder import BoxCoder
from scbloss.detection.criterion import ARM_REJECT, total_loss
from scbloss.detection.iou import PriorIntervals
from scbloss.detection.loss import MultiBoxLoss, hard_negative_mask, object_cap, pad_targets
from scbloss.detection.priors import generate_priors, priors_for_loss, targets_for_loss
from scbloss.models import build_criterion
from scbloss.recipes import recipe


def _pixel_batch(generator, batch=4, size=300, most=9):
    """Whole-pixel boxes (so that many IoUs tie exactly), some images empty, one with more than 8 objects."""
    targets = []
    for image in range(batch):
        count = 0 if image == 1 else (most if image == 2 else int(torch.randint(1, 6, (1,), generator=generator)))
        x1y1 = torch.randint(0, size - 40, (count, 2), generator=generator)
        wh = torch.randint(8, 160, (count, 2), generator=generator)
        boxes = torch.cat([x1y1, (x1y1 + wh).clamp(max=size)], dim=1).float() / size
        targets.append({"boxes": boxes, "labels": torch.randint(1, 21, (count,), generator=generator)})
    return targets


@functools.cache
def _authors_ssd300():
    """SSD300's VOC layout as the authors recipe builds it, its loss priors (pixels) and their interval split."""
    layout = recipe("authors").layout(detectors.get("ssd300").layout("voc"))
    priors = priors_for_loss(layout)
    return layout, priors, PriorIntervals(priors)


def _assert_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.abs().max().clamp(min=1e-12)
    assert (ours - reference).abs().max() <= 1e-5 * scale, f"{(ours - reference).abs().max() / scale:.2e}"


@pytest.mark.parametrize("apply_to", ["cls", "cls+loc"])
@pytest.mark.parametrize("weighting", ["none", "scb"])  # the other forms: test_loss.py against float64
@pytest.mark.parametrize("images_per_normalizer", [None, 2])
def test_padded_loss_equals_the_reference_on_pixel_ties(weighting, apply_to, images_per_normalizer):
    """SSD300's mmdetection (authors recipe) anchors in pixels and whole-pixel boxes: exact IoU ties everywhere."""
    generator = torch.Generator().manual_seed(0)
    layout, priors, intervals = _authors_ssd300()
    targets = targets_for_loss(layout, _pixel_batch(generator))
    loc = torch.randn(4, len(priors), 4, generator=generator)
    conf = torch.randn(4, len(priors), 21, generator=generator)
    options = dict(weighting=weighting, apply_to=apply_to, images_per_normalizer=images_per_normalizer)
    terms = []
    for loss in (MultiBoxLoss(**options), ReferenceMultiBoxLoss(**options)):
        loss._cached_intervals = intervals  # built once for the module: torch.unique over 8732 priors takes ~1 s
        loc_, conf_ = loc.clone().requires_grad_(), conf.clone().requires_grad_()
        out = loss(loc_, conf_, priors, targets)
        (out["loss_cls"] + out["loss_loc"]).backward()
        terms.append([out["loss_cls"], out["loss_loc"], out["num_pos"], loc_.grad, conf_.grad])
    ours, reference = terms
    assert int(ours[2]) == int(reference[2]) > 0
    for mine, theirs in zip(ours[:2] + ours[3:], reference[:2] + reference[3:]):
        _assert_close(mine.detach(), theirs.detach())


def _reference_refinedet(weighting, variant, outputs, model, targets):
    """RefineDetCriterion as it was, on the reference loss."""
    arm_loc, arm_conf, odm_loc, odm_conf = (o.float() for o in outputs)
    arm_loss = ReferenceMultiBoxLoss(weighting=weighting)
    odm_loss = ReferenceMultiBoxLoss(weighting=weighting if variant == "arm_odm" else "none")
    objectness = [{"boxes": t["boxes"], "labels": torch.ones_like(t["labels"])} for t in targets]
    arm = arm_loss(arm_loc, arm_conf, model.priors, objectness)
    rejected = arm_conf.detach().softmax(dim=-1)[..., 1] <= ARM_REJECT
    odm = odm_loss(odm_loc, odm_conf, model.refined_priors(arm_loc), targets, not_negative=rejected)
    return arm["loss_cls"] + arm["loss_loc"] + odm["loss_cls"] + odm["loss_loc"], odm["num_pos"]


class _RefineDetPriors:
    """What RefineDetCriterion asks of the network: its anchors and the refinement (RefineDet.refined_priors)."""

    def __init__(self) -> None:
        self.priors = generate_priors(detectors.get("refinedet320").layout("voc"))

    def refined_priors(self, arm_loc):
        return BoxCoder().decode(arm_loc.detach(), self.priors[None])


@pytest.mark.parametrize("variant", ["arm", "arm_odm"])
def test_refinedet_losses_and_gradients_equal_the_reference(variant):
    """Per-image refined anchors [B, A, 4] and the not_negative mask; gradients with respect to all four outputs."""
    generator = torch.Generator().manual_seed(1)
    model = _RefineDetPriors()
    targets = _pixel_batch(generator, batch=3, size=320)
    anchors = len(model.priors)
    outputs = [
        torch.randn(3, anchors, 4, generator=generator) * 0.3,
        torch.randn(3, anchors, 2, generator=generator) * 3,  # spread: some anchors below ARM_REJECT
        torch.randn(3, anchors, 4, generator=generator),
        torch.randn(3, anchors, 21, generator=generator),
    ]
    results = []
    for compute in (
        lambda o: total_loss(build_criterion("refinedet320", "scb", variant)(o, model, targets)),
        lambda o: _reference_refinedet("scb", variant, o, model, targets)[0],
    ):
        leaves = [o.clone().requires_grad_() for o in outputs]
        loss = compute(leaves)
        loss.backward()
        results.append([loss.detach()] + [leaf.grad for leaf in leaves])
    assert (torch.softmax(outputs[1], -1)[..., 1] <= ARM_REJECT).any()
    for ours, reference in zip(*results):
        _assert_close(ours, reference)


def _gradients(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_padding_grows_the_cap_to_a_power_of_two_and_never_truncates():
    box = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    many = {"boxes": box.repeat(17, 1), "labels": torch.arange(17) % 4 + 1}
    few = {"boxes": box, "labels": torch.tensor([2])}
    padded = pad_targets([few, many], 4, torch.device("cpu"), torch.float32, cap=16)
    assert padded.boxes.shape == (2, 32, 4) and padded.labels.shape == padded.valid.shape == (2, 32)
    assert padded.valid.sum(dim=1).tolist() == [1, 17]
    assert padded.labels[1, :17].tolist() == (torch.arange(17) % 4 + 1).tolist()
    assert padded.labels[0].tolist() == [2] + [0] * 31 and padded.boxes[0, 1:].abs().sum() == 0
    assert [object_cap(n) for n in (0, 16, 17, 32, 33, 100)] == [16, 16, 32, 32, 64, 128]
    loss = MultiBoxLoss()
    loss.pad([many], 4, torch.device("cpu"), torch.float32)
    assert loss.pad([few], 4, torch.device("cpu"), torch.float32).boxes.shape[1] == 32  # the cap never shrinks


def test_a_label_out_of_range_is_refused_when_padding():
    target = {"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 2), "labels": torch.tensor([3, 7])}
    with pytest.raises(ValueError, match=r"labels must lie in 1\.\.4 \(0 is background\), got 3\.\.7"):
        pad_targets([target], 4, torch.device("cpu"), torch.float32)


def test_hard_negatives_of_equal_loss_rank_by_prior_index():
    mask = hard_negative_mask(torch.tensor([[1.0, 2.0, 1.0, 1.0, float("-inf")]]), torch.tensor([3]))
    assert mask.tolist() == [[True, True, True, False, False]]


def test_padding_slots_take_no_prior():
    """An image's loss is the same alone (cap 16) as padded beside a fuller image (cap 32): hand-made priors where
    the one object holds prior 0 (IoU 1) and prior 1 (IoU 0.5); padding at [0, 0, 0, 0] holds nothing."""
    priors = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.2, 0.1], [0.5, 0.5, 0.9, 0.9]])
    target = {"boxes": torch.tensor([[0.0, 0.0, 0.2, 0.2]]), "labels": torch.tensor([1])}
    conf = torch.zeros(1, 3, 2)
    loss = MultiBoxLoss(weighting="scb")
    out = loss(torch.zeros(1, 3, 4), conf, priors, [target])
    # 2 positives with W(2) = 3 (log 2 + 1) / 2 each, CE log 2 each; 1 negative mined (3 x 2 > 1 left), CE log 2
    expected = (2 * 1.5 * (math.log(2) + 1) * math.log(2) + math.log(2)) / 2
    assert out["num_pos"].item() == 2
    assert out["loss_cls"].item() == pytest.approx(expected, rel=1e-6)
    padded = pad_targets([target], 1, torch.device("cpu"), torch.float32, cap=32)
    again = loss.forward_padded(torch.zeros(1, 3, 4), conf, priors, padded)
    assert again["loss_cls"].item() == pytest.approx(expected, rel=1e-6)


def test_compile_auto_means_cuda_graphs_on_cuda_and_eager_on_the_cpu():
    from scbloss.engine.precision import resolve

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert (resolve("fp32", "auto", cuda).compile, resolve("fp32", "auto", cuda).compile_mode) == (
        True,
        "reduce-overhead",
    )
    assert (resolve("fp32", "true", cuda).compile, resolve("fp32", "true", cuda).compile_mode) == (True, None)
    assert not resolve("fp32", "false", cuda).compile and not resolve("fp32", "auto", cpu).compile
    module = torch.nn.Linear(2, 1)
    assert resolve("fp32", "auto", cpu).compiled(module) is module


def test_fastest_on_a_cpu_is_channels_last_and_bf16_only_with_bf16_instructions(tmp_path, monkeypatch):
    from scbloss.engine import precision

    with_bf16, without = tmp_path / "bf16", tmp_path / "avx2"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision.cpu_has_native_bf16(with_bf16) and not precision.cpu_has_native_bf16(without)
    assert not precision.cpu_has_native_bf16(tmp_path / "absent")
    cpu = torch.device("cpu")
    for flags, name, dtype in ((True, "bf16", torch.bfloat16), (False, "fp32", None)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=flags: flags)
        fastest = precision.resolve("fastest", "auto", cpu)
        assert (fastest.name, fastest.autocast_dtype, fastest.channels_last, fastest.compile) == (
            name,
            dtype,
            True,
            False,
        )
    assert not precision.resolve("auto", "auto", cpu).channels_last  # auto stays exact fp32 on a CPU


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssd300", "refinedet320"])
def test_model_and_loss_trace_as_one_graph(name):
    """Dynamo captures network + padded loss as one graph with no break (no .item(), nonzero or branch on a value);
    about 5 s (SSD300) and 10 s (RefineDet320) on a 2-core CPU. Inductor code generation is not run here."""
    from scbloss.detection.loss import PaddedTargets
    from scbloss.models import build_model

    torch.manual_seed(0)
    model = build_model(name, 21, 0.0625, "voc", batch_norm=True)
    criterion = build_criterion(name, "scb")
    size = model.layout.image_size
    images = torch.randn(2, 3, size, size)
    padded = criterion.pad(model(images), model, _pixel_batch(torch.Generator().manual_seed(2), 2, size, 3))

    def step(images, boxes, labels, valid):
        return total_loss(criterion.padded(model(images), model, PaddedTargets(boxes, labels, valid)))

    explanation = torch._dynamo.explain(step)(images, *padded)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
