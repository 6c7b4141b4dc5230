"""SSD's per-level 3x3 convolutional box-regression and classification heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import xavier_init


def _flatten_level(output: torch.Tensor, per_prior: int) -> torch.Tensor:
    """[B, A*K, H, W] -> [B, H*W*A, K]: cell by cell, the A priors of a cell together, as the priors are generated."""
    batch = output.shape[0]
    return output.permute(0, 2, 3, 1).reshape(batch, -1, per_prior)


class SSDHead(nn.Module):
    """One loc conv and one conf conv per feature level; outputs concatenated over levels."""

    def __init__(self, in_channels: Sequence[int], priors_per_location: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.loc = nn.ModuleList(
            nn.Conv2d(c, n * 4, kernel_size=3, padding=1) for c, n in zip(in_channels, priors_per_location)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, n * num_classes, kernel_size=3, padding=1) for c, n in zip(in_channels, priors_per_location)
        )
        xavier_init(self)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loc = torch.cat([_flatten_level(head(x), 4) for head, x in zip(self.loc, features)], dim=1)
        conf = torch.cat([_flatten_level(head(x), self.num_classes) for head, x in zip(self.conf, features)], dim=1)
        return loc, conf


__all__ = ["SSDHead"]
