"""A ResNet-101 trunk with torchvision's module names (so its ImageNet weights load) and a width multiplier."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .vgg import scaled

RESNET101_BLOCKS = (3, 4, 23, 3)


class ResNetTrunk(nn.Module):
    """conv1 .. layer4 of ResNet-101; layer4 keeps stride 16 with dilation 2 (as DSSD's conv5_x).

    ``forward`` returns (layer2 [stride 8], layer4 [stride 16]) feature maps. Built from torchvision's Bottleneck
    because torchvision's ResNet fixes its channel counts; names match, so ``torchvision.models.resnet101`` weights
    load with width=1.
    """

    def __init__(self, width: float = 1.0, blocks=RESNET101_BLOCKS) -> None:
        super().__init__()
        self.inplanes, self.dilation = scaled(64, width), 1
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(scaled(64, width), blocks[0])
        self.layer2 = self._make_layer(scaled(128, width), blocks[1], stride=2)
        self.layer3 = self._make_layer(scaled(256, width), blocks[2], stride=2)
        self.layer4 = self._make_layer(scaled(512, width), blocks[3], stride=2, dilate=True)
        self.layer2_channels = scaled(128, width) * Bottleneck.expansion
        self.layer4_channels = scaled(512, width) * Bottleneck.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stride8 = self.layer2(self.layer1(x))
        return stride8, self.layer4(self.layer3(stride8))


__all__ = ["ResNetTrunk"]
