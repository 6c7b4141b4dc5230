"""SSD300 and SSD512 (Liu et al., 2016) on the VGG16 trunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..detection.priors import PriorLayout
from .base import SingleShotDetector, xavier_init
from .heads import SSDHead
from .vgg import L2Norm, VGG16Trunk, scaled

# (1x1 channels, 3x3 channels, stride, padding, kernel) of conv8..conv12 in the Caffe SSD recipes.
_EXTRAS_300 = [(256, 512, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 1, 0, 3), (128, 256, 1, 0, 3)]
_EXTRAS_512 = [(256, 512, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 1, 1, 4)]


def build_extras(in_channels: int, spec: Sequence[tuple[int, int, int, int, int]], width: float) -> nn.ModuleList:
    """SSD's extra feature layers: each block a 1x1 reduction then a 3x3 (or 4x4) convolution, both with ReLU."""
    blocks = nn.ModuleList()
    for reduce, out, stride, padding, kernel in spec:
        reduce_c, out_c = scaled(reduce, width), scaled(out, width)
        blocks.append(
            nn.Sequential(
                nn.Conv2d(in_channels, reduce_c, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(reduce_c, out_c, kernel_size=kernel, stride=stride, padding=padding),
                nn.ReLU(inplace=True),
            )
        )
        in_channels = out_c
    xavier_init(blocks)
    return blocks


class SSD(SingleShotDetector):
    """VGG16 trunk + L2Norm(conv4_3) + extra layers + heads."""

    def __init__(self, layout: PriorLayout, num_classes: int, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__(layout, num_classes)
        spec = self.recipe({300: _EXTRAS_300, 512: _EXTRAS_512}, levels_before=2)  # conv4_3 and fc7 come first
        self.trunk = VGG16Trunk(width, batch_norm)
        self.l2norm = L2Norm(self.trunk.conv4_3_channels, scale=20.0)
        self.extras = build_extras(self.trunk.fc7_channels, spec, width)
        channels = [self.trunk.conv4_3_channels, self.trunk.fc7_channels] + [scaled(s[1], width) for s in spec]
        self.head = SSDHead(channels, layout.priors_per_location(), num_classes)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        conv4_3, x = self.trunk(images)
        maps = [self.l2norm(conv4_3), x]
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps


__all__ = ["SSD", "build_extras"]
