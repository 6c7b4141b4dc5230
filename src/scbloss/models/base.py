"""What every single-shot detector here shares: its prior layout, its priors, an input check, head outputs."""

from __future__ import annotations

import torch
from torch import nn

from ..detection.priors import PriorLayout, generate_priors, priors_for_loss


def xavier_init(*modules: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every convolution below ``modules`` (the SSD family's init)."""
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)


class SingleShotDetector(nn.Module):
    """Subclasses build ``head`` and implement ``features``; ``forward(images)`` -> (loc [B,A,4], conf [B,A,C]).

    ``num_classes`` counts the background, as torchvision's detection models do; ``priors`` ([A, 4], normalized
    xyxy, in the order of the head outputs) and ``loss_priors`` (the same priors in the frame the loss matches in,
    see :func:`scbloss.detection.priors.priors_for_loss`) are non-persistent buffers.
    """

    def __init__(self, layout: PriorLayout, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"{type(self).__name__}: num_classes counts the background and must be >= 2, got {num_classes}"
            )
        self.layout, self.num_classes = layout, num_classes
        self.register_buffer("priors", generate_priors(layout), persistent=False)
        self.register_buffer("loss_priors", priors_for_loss(layout), persistent=False)

    def recipe(self, recipes: dict, levels_before: int) -> list:
        """The layer recipe for this layout's input size, checked to give one map per prior level."""
        spec = recipes.get(self.layout.image_size)
        if spec is None or len(spec) + levels_before != len(self.layout.feature_maps):
            raise ValueError(
                f"{type(self).__name__}: no layer recipe for input {self.layout.image_size} with "
                f"{len(self.layout.feature_maps)} feature maps"
            )
        return spec

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def check_input(self, images: torch.Tensor) -> None:
        size = self.layout.image_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"{type(self).__name__}: expected images [B, 3, {size}, {size}], got {list(images.shape)}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(images)
        return self.head(self.features(images))

    def detection_inputs(self, outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loc, conf, priors) for :func:`scbloss.detection.postprocess` from this model's outputs."""
        loc, conf = outputs
        return loc, conf, self.priors


__all__ = ["SingleShotDetector", "xavier_init"]
