"""DSSD321 / DSSD513 (Fu et al., 2017, arXiv:1701.06659): SSD on ResNet-101 with a deconvolutional way back up.

SSD-style extra layers follow conv5_x; then, from the deepest map up, each deconvolution module (DSSD Fig. 3)
upsamples the map above (2x2 deconvolution, 3x3 convolution, BatchNorm), passes the SSD map of its level through
3x3 conv-BN-ReLU-conv-BN, multiplies the two element-wise and applies ReLU. Every level then goes through a
prediction module (DSSD Fig. 2c: a residual block of 1x1 convolutions, 256-256-1024, with a 1x1 projection on the
skip path) before the SSD heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..detection.priors import PriorLayout
from .base import SingleShotDetector, xavier_init
from .heads import SSDHead
from .resnet import ResNetTrunk
from .ssd import build_extras
from .vgg import scaled

# Extra layers after conv5_x (1x1 channels, 3x3 channels, stride, padding, kernel): 21 -> 11 -> 6 -> 3 -> 1 for
# DSSD321, 33 -> 17 -> 9 -> 5 -> 3 -> 1 for DSSD513.
_EXTRAS_321 = [(256, 512, 2, 1, 3), (256, 512, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 1, 0, 3)]
_EXTRAS_513 = [(256, 512, 2, 1, 3), (256, 512, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 2, 1, 3), (128, 256, 1, 0, 3)]


class DeconvolutionModule(nn.Module):
    def __init__(self, top_channels: int, lateral_channels: int, channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(top_channels, channels, kernel_size=2, stride=2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )
        self.lateral = nn.Sequential(
            nn.Conv2d(lateral_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        up = self.up(top)
        if up.shape[-2:] != lateral.shape[-2:]:  # odd sizes (3 -> 6 -> 5, 11 -> 21): resize to the lateral map
            up = F.interpolate(up, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return F.relu(up * self.lateral(lateral))


class PredictionModule(nn.Module):
    def __init__(self, in_channels: int, width: float) -> None:
        super().__init__()
        inner, out = scaled(256, width), scaled(1024, width)
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, out, 1),
        )
        self.skip = nn.Conv2d(in_channels, out, 1)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.skip(x))


class DSSD(SingleShotDetector):
    """ResNet-101 + SSD extras + deconvolution modules + prediction modules + SSD heads."""

    deconvolution = True  # False: the heads see the SSD maps themselves (ResNetSSD, DSSD's first stage)

    def __init__(self, layout: PriorLayout, num_classes: int, width: float = 1.0, batch_norm: bool = True) -> None:
        super().__init__(layout, num_classes)
        spec = self.recipe({321: _EXTRAS_321, 513: _EXTRAS_513}, levels_before=2)  # conv3_x and conv5_x first
        self.trunk = ResNetTrunk(width)  # ResNet has BatchNorm throughout; batch_norm is accepted for symmetry
        self.extras = build_extras(self.trunk.layer4_channels, spec, width)
        ssd_channels = [self.trunk.layer2_channels, self.trunk.layer4_channels] + [scaled(s[1], width) for s in spec]
        if self.deconvolution:
            channels = scaled(512, width)
            # deconv[i] builds level i from level i+1 (already deconvolved) and the SSD map of level i
            self.deconv = nn.ModuleList(
                DeconvolutionModule(
                    ssd_channels[-1] if i == len(ssd_channels) - 2 else channels, ssd_channels[i], channels
                )
                for i in range(len(ssd_channels) - 1)
            )
            predicted = [channels] * (len(ssd_channels) - 1) + [ssd_channels[-1]]
        else:
            self.deconv = nn.ModuleList()
            predicted = ssd_channels
        self.predict = nn.ModuleList(PredictionModule(c, width) for c in predicted)
        self.head = SSDHead([p.out_channels for p in self.predict], layout.priors_per_location(), num_classes)
        xavier_init(self.deconv, self.predict)

    def ssd_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        stride8, x = self.trunk(images)
        maps = [stride8, x]
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        ssd_maps = self.ssd_maps(images)
        if not self.deconvolution:
            return [module(m) for module, m in zip(self.predict, ssd_maps)]
        maps = [ssd_maps[-1]]  # the deepest map is predicted on as it is
        for level in range(len(ssd_maps) - 2, -1, -1):
            maps.insert(0, self.deconv[level](maps[0], ssd_maps[level]))
        return [module(m) for module, m in zip(self.predict, maps)]


class ResNetSSD(DSSD):
    """DSSD's first stage, SSD on ResNet-101 (DSSD paper Sec. 3.1; Caffe DSSD ``ssd_coco_resnet_513.py``): the
    trunk and extras a DSSD run then starts from and freezes, with prediction modules and heads on the SSD maps."""

    deconvolution = False


__all__ = ["DSSD", "DeconvolutionModule", "PredictionModule", "ResNetSSD"]
