"""Detection-core benchmarks (issue 2): the cost of the scale-balanced weighting, and our batched matching + loss
against torchvision's SSD matching + compute_loss on identical inputs."""

from __future__ import annotations

import torch
from torch.utils.benchmark import Timer
from torchvision.models.detection import ssd300_vgg16
from torchvision.ops import box_iou

from scbloss import detectors
from scbloss.detection import MultiBoxLoss, generate_priors
from scbloss.models import build_model


def random_targets(batch: int, num_classes: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """1-20 objects per image, normalized xyxy boxes of every scale."""
    targets = []
    for _ in range(batch):
        count = int(torch.randint(1, 21, (1,), generator=generator))
        centre = torch.rand(count, 2, generator=generator)
        size = torch.rand(count, 2, generator=generator) * 0.6 + 0.02
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1).clamp(0, 1)
        labels = torch.randint(1, num_classes, (count,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels})
    return targets


def _median(stmt: str, env: dict, min_run_time: float) -> float:
    return (
        Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def bench_weighting_overhead(quick: bool) -> dict[str, float]:
    """A full SSD300 train step (forward + backward, batch 8, CPU) with scb against none."""
    generator = torch.Generator().manual_seed(0)
    model = build_model("ssd300", 21)
    images = torch.randn(8, 3, 300, 300, generator=generator)
    targets = random_targets(8, 21, generator)
    losses = {name: MultiBoxLoss(weighting=name) for name in ("none", "scb")}

    def step(name: str) -> None:
        model.zero_grad(set_to_none=True)
        loc, conf = model(images)
        out = losses[name](loc, conf, model.priors, targets)
        (out["loss_cls"] + out["loss_loc"]).backward()

    env = {"step": step}
    step("none")  # warm-up
    rounds = 1 if quick else 3
    times = {"none": [], "scb": []}
    for _ in range(rounds):  # interleaved so drift in machine load hits both alike
        for name in ("none", "scb"):
            times[name].append(_median(f"step({name!r})", env, 2.0 if quick else 10.0))
    none, scb = min(times["none"]), min(times["scb"])
    return {"none_s": none, "scb_s": scb, "ratio": scb / none, "target": 1.02}


def bench_against_torchvision(quick: bool) -> dict[str, float]:
    """Batch 32, 8732 priors: our batched matching + loss vs torchvision's per-image matching + compute_loss."""
    generator = torch.Generator().manual_seed(1)
    batch, num_classes = 32, 21
    priors = generate_priors(detectors.get("ssd300").layout("coco"))
    targets = random_targets(batch, num_classes, generator)
    loc = torch.randn(batch, len(priors), 4, generator=generator)
    conf = torch.randn(batch, len(priors), num_classes, generator=generator)
    ours = MultiBoxLoss(weighting="scb")
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
    anchors = [priors] * batch
    head = {"bbox_regression": loc, "cls_logits": conf}

    def torchvision_step() -> dict[str, torch.Tensor]:
        matched = [tv.proposal_matcher(box_iou(t["boxes"], a)) for t, a in zip(targets, anchors)]
        return tv.compute_loss(targets, head, anchors, matched)

    env = {"ours": lambda: ours(loc, conf, priors, targets), "theirs": torchvision_step}
    for _ in range(3):  # steady state for both: caches built, the allocator's heap grown past these tensor sizes
        env["theirs"]()
        env["ours"]()
    run_time = 1.0 if quick else 5.0
    theirs_s = _median("theirs()", env, run_time)
    ours_s = _median("ours()", env, run_time)
    return {"torchvision_s": theirs_s, "ours_s": ours_s, "ratio": ours_s / theirs_s, "target": 0.5}
