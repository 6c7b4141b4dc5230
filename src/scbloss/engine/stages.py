"""Training in stages (DSSD's): a run starts some modules from an earlier run's final model and may freeze them."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)


def _module(model: nn.Module, name: str, key: str) -> nn.Module:
    children = dict(model.named_children())
    if name not in children:
        raise ValueError(f"{key}: {type(model).__name__} has no module {name!r} (it has {', '.join(children)})")
    return children[name]


def load_modules(model: nn.Module, path: str | Path, names: list[str]) -> int:
    """Copy the weights of the modules ``names`` from ``path`` (a ``model_final.pt``); every tensor of theirs must be
    there with its shape. Returns how many tensors were copied."""
    saved = load_checkpoint(Path(path)).get("model")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: holds no model weights (not a model_final.pt of scbloss train)")
    copied = 0
    for name in names:
        module = _module(model, name, "init_modules")
        prefix = f"{name}."
        theirs = {key[len(prefix) :]: value for key, value in saved.items() if key.startswith(prefix)}
        ours = module.state_dict()
        missing = sorted(set(ours) - set(theirs))
        if missing:
            raise CheckpointError(f"{path}: no {prefix}{missing[0]} for init_modules {name!r} ({len(missing)} missing)")
        for key, value in ours.items():
            if theirs[key].shape != value.shape:
                raise CheckpointError(
                    f"{path}: {prefix}{key} has shape {list(theirs[key].shape)}, this network's {list(value.shape)}"
                )
        module.load_state_dict({key: theirs[key] for key in ours})
        copied += len(ours)
    log.info("started %s from %s (%d tensors)", ", ".join(names), path, copied)
    return copied


def _frozen_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm2d replaced by torchvision's FrozenBatchNorm2d holding its statistics."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, name).copy_(getattr(module, name).detach())
        return frozen
    for name, child in module.named_children():
        replaced = _frozen_batch_norm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def freeze_modules(model: nn.Module, names: list[str]) -> int:
    """Freeze the modules ``names``: no parameter of theirs takes a gradient, and their BatchNorm normalizes with its
    running statistics, in training too (detectron2's and torchvision's FrozenBatchNorm2d, Caffe's
    ``use_global_stats``). Returns the number of parameters frozen."""
    frozen = 0
    for name in names:
        module = _frozen_batch_norm(_module(model, name, "freeze"))
        setattr(model, name, module)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    log.info("froze %s (%d parameters, BatchNorm on running statistics)", ", ".join(names), frozen)
    return frozen


__all__ = ["freeze_modules", "load_modules"]
