"""FSSD300 / FSSD512 (Li and Zhou, 2017, arXiv:1712.00960): SSD with a feature-fusion module on VGG16.

conv4_3, fc7 and SSD's conv7_2 are each reduced to 256 channels by a 1x1 convolution, resized bilinearly to the
conv4_3 resolution (38x38 / 64x64), concatenated and batch-normalized; a new feature pyramid (512, 512, 256, 256,
256, 256 channels) is built from the fused map by 3x3 convolutions and ReLU, as Caffe FSSD and PytorchSSD build it,
and the SSD heads predict on it. Everything else (priors, matching, loss, post-processing) is SSD's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..detection.priors import PriorLayout
from .base import SingleShotDetector, xavier_init
from .heads import SSDHead
from .vgg import VGG16Trunk, scaled

# Pyramid convolutions (out channels, stride, padding, kernel) after the first 3x3 (512) on the fused map: Caffe
# FSSD fssd_pascal.py L55-60 / fssd_coco_512.py L49-61, PytorchSSD models/FSSD_vgg.py L179-192 (the same layers).
_PYRAMID_300 = [(512, 2, 1, 3), (256, 2, 1, 3), (256, 2, 1, 3), (256, 1, 0, 3), (256, 1, 0, 3)]
_PYRAMID_512 = [(512, 2, 1, 3), (256, 2, 1, 3), (256, 2, 1, 3), (256, 2, 1, 3), (256, 2, 1, 3), (256, 1, 1, 4)]


def conv_relu(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0, batch_norm: bool = False
) -> nn.Sequential:
    """A pyramid level: convolution and ReLU, as both sources build it (no BatchNorm: Caffe FSSD's
    ``use_batchnorm = False``, PytorchSSD's BasicConv ``bn=False``); ``batch_norm`` adds one to train from scratch."""
    if not batch_norm:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True)
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FSSD(SingleShotDetector):
    """VGG16 trunk + feature fusion + a new pyramid + SSD heads."""

    def __init__(self, layout: PriorLayout, num_classes: int, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__(layout, num_classes)
        pyramid = self.recipe({300: _PYRAMID_300, 512: _PYRAMID_512}, levels_before=1)  # the fused map first
        self.trunk = VGG16Trunk(width, batch_norm)
        reduced = scaled(256, width)
        # conv6_1 ... conv7_2 of SSD, the extra layers up to the one the fusion takes (fc7 19x19 -> 10x10; 32x32 ->
        # 16x16 for 512): Caffe FSSD fssd_pascal.py L29-47 (256 1x1, 512 3x3, 128 1x1, 256 3x3 stride 2)
        self.conv7 = nn.Sequential(
            nn.Conv2d(self.trunk.fc7_channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, scaled(512, width), 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(scaled(512, width), scaled(128, width), 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(scaled(128, width), reduced, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.reduce = nn.ModuleList(
            nn.Conv2d(channels, reduced, 1)
            for channels in (self.trunk.conv4_3_channels, self.trunk.fc7_channels, reduced)
        )
        self.fusion_bn = nn.BatchNorm2d(3 * reduced)
        levels = [conv_relu(3 * reduced, scaled(512, width), 3, padding=1, batch_norm=batch_norm)]
        channels = [scaled(512, width)]
        for out, stride, padding, kernel in pyramid:
            levels.append(conv_relu(channels[-1], scaled(out, width), kernel, stride, padding, batch_norm))
            channels.append(scaled(out, width))
        self.pyramid = nn.ModuleList(levels)
        self.head = SSDHead(channels, layout.priors_per_location(), num_classes)
        xavier_init(self.conv7, self.reduce, self.pyramid)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        conv4_3, fc7 = self.trunk(images)
        conv7_2 = self.conv7(fc7)
        size = conv4_3.shape[-2:]
        fused = torch.cat(
            [
                F.interpolate(reduce(x), size=size, mode="bilinear", align_corners=False)
                if x.shape[-2:] != size
                else reduce(x)
                for reduce, x in zip(self.reduce, (conv4_3, fc7, conv7_2))
            ],
            dim=1,
        )
        x = self.fusion_bn(fused)
        maps = []
        for level in self.pyramid:
            x = level(x)
            maps.append(x)
        return maps


def pytorchssd_init(model: FSSD) -> None:
    """PytorchSSD's ``weights_init`` of FSSD's new layers (lzx1413/PytorchSSD@320fe34 ``train_test.py`` L149-174),
    on this network's modules. It keys on state-dict names: a weight under a ``conv`` name, which only its
    BasicConv wrappers give (``ft_module``, ``pyramid_ext``: our ``reduce`` and ``pyramid``), is drawn by
    ``kaiming_normal`` with ``mode='fan_out'`` (L152-153); a weight under a ``bn`` name is set to 1 (L154-155); every
    bias is set to 0 (L156-157). Its plain ``nn.Conv2d`` layers (``extras``, ``loc``, ``conf``: our ``conv7`` and
    heads) keep PyTorch's default init, biases 0. ``fea_bn`` (our ``fusion_bn``), which no ``apply`` reaches,
    keeps PyTorch's default (weight 1, bias 0); the pyramid's BatchNorm of a from-scratch run (``batch_norm``),
    which PytorchSSD's BasicConv (``bn=False``) lacks, gets what the rule gives a ``bn`` weight and bias: 1, 0."""
    for module in (model.reduce, model.pyramid):
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out")
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
    for module in (model.conv7, model.head):
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                conv.reset_parameters()
                nn.init.zeros_(conv.bias)
    for module in (model.pyramid, model.fusion_bn):
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.reset_parameters()


__all__ = ["FSSD", "pytorchssd_init"]
