"""SSD's VGG16 trunk: torchvision's VGG16 layer layout with pool5 3x3/1 and fc6/fc7 as (dilated) convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import xavier_init

# torchvision's vgg16 "D" configuration; "C" marks the ceil-mode pool3 that makes 300 -> 38 at conv4_3.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
CONV4_3 = 10  # conv4_3 is the 10th convolution


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


class L2Norm(nn.Module):
    """Channel-wise L2 normalization with a learned per-channel scale (ParseNet), initialized to ``scale``."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1, eps=1e-10) * self.weight.view(1, -1, 1, 1)


class VGG16Trunk(nn.Module):
    """conv1_1 .. fc7. ``forward`` returns (conv4_3, fc7) feature maps.

    ``features`` keeps torchvision's vgg16 indices (features.0 ... features.28) so ImageNet weights load by name.
    ``pool5_stride`` and ``fc6_dilation`` are SSD's (1, 6) or RefineDet's (2, 3).
    ``batch_norm`` adds BatchNorm after each trunk convolution (as torchvision's vgg16_bn): SSD trained from scratch,
    as the CPU toy runs are, does not converge without it (ScratchDet, Zhu et al. 2019); the paper's runs leave it off.
    """

    def __init__(
        self, width: float = 1.0, batch_norm: bool = False, pool5_stride: int = 1, fc6_dilation: int = 6
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, convs = 3, 0
        for entry in _VGG16:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            elif entry == "C":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                out_channels = scaled(entry, width)
                layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out_channels))
                layers.append(nn.ReLU(inplace=True))
                in_channels, convs = out_channels, convs + 1
                if convs == CONV4_3:
                    self.conv4_3_end = len(layers)
        self.batch_norm = batch_norm
        self.features = nn.Sequential(*layers)
        fc_channels = scaled(1024, width)
        # SSD keeps pool5 at stride 1 (3x3), fc6 dilated by 6; RefineDet halves the map there (2x2), dilation 3.
        if pool5_stride not in (1, 2):
            raise ValueError(f"VGG16Trunk: pool5_stride must be 1 or 2, got {pool5_stride}")
        pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1) if pool5_stride == 1 else nn.MaxPool2d(2, stride=2)
        dilation = fc6_dilation
        self.fc = nn.Sequential(
            pool5,
            nn.Conv2d(in_channels, fc_channels, kernel_size=3, padding=dilation, dilation=dilation),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(fc_channels, fc_channels, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        self.conv4_3_channels = scaled(512, width)
        self.fc7_channels = fc_channels
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv4_3, _, fc7 = self.forward_all(x)
        return conv4_3, fc7

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(conv4_3, conv5_3, fc7) feature maps."""
        conv4_3 = self.features[: self.conv4_3_end](x)
        conv5_3 = self.features[self.conv4_3_end :](conv4_3)
        return conv4_3, conv5_3, self.fc(conv5_3)


__all__ = ["L2Norm", "VGG16Trunk", "scaled"]
