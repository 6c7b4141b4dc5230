"""Per-detector CPU train-step time (forward + loss + backward) at the toy width and at full width, each
reported with its ratio to SSD300's step measured in the same run."""

from __future__ import annotations

import time

import torch

from scbloss import detectors
from scbloss.detection.criterion import total_loss
from scbloss.models import build_criterion, build_model

TOY_WIDTH, TOY_BATCH, FULL_BATCH = 0.125, 8, 2


def _step_seconds(name: str, width: float, batch: int, repeats: int) -> float:
    model = build_model(name, num_classes=21, width=width, dataset="coco", batch_norm=width < 1)
    criterion = build_criterion(name, "scb")
    size = model.layout.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    targets = [
        {"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.6, 0.55, 0.7, 0.62]]), "labels": torch.tensor([3, 7])}
        for _ in range(batch)
    ]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        losses = criterion(model(images), model, targets)
        total_loss(losses).backward()

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def bench_detector_steps(quick: bool) -> list[str]:
    lines = []
    for label, width, batch in (("toy width", TOY_WIDTH, TOY_BATCH), ("full width", 1.0, FULL_BATCH)):
        reference = _step_seconds("ssd300", width, batch, 1 if quick else 3)
        for name in detectors.names():
            seconds = reference if name == "ssd300" else _step_seconds(name, width, batch, 1 if quick else 3)
            lines.append(
                f"{label} (width {width}, batch {batch}): {name:13s} {seconds:7.3f} s/step, "
                f"{seconds / reference:5.2f}x SSD300"
            )
    return lines
