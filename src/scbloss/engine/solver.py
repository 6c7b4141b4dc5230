"""The optimizer and the learning-rate schedule of a run (detectron2's solver)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import TrainConfig


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay on every parameter that is not frozen, as every PyTorch port of SSD's
    recipe (a frozen one takes no decay either: Caffe's ``lr_mult 0, decay_mult 0``)."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up from ``warmup_factor``, then multiplied by ``gamma`` at each of ``lr_steps``."""
    steps_passed = sum(iteration >= step for step in config.lr_steps)
    factor = config.gamma**steps_passed
    if iteration < config.warmup_iters:
        progress = iteration / config.warmup_iters
        factor *= config.warmup_factor + (1 - config.warmup_factor) * progress
    return factor


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The learning rate of each iteration."""
    return lambda iteration: config.lr * lr_factor(config, iteration)


__all__ = ["build_optimizer", "lr_factor", "lr_schedule"]
