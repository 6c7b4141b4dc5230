"""RefineDet320 (Zhang et al., 2018) on VGG16: an anchor refinement module (ARM) and an object detection
module (ODM) joined by transfer connection blocks (TCB).

The ARM predicts, on conv4_3 (L2Norm 10), conv5_3 (L2Norm 8), fc7 and conv6_2 (40, 20, 10, 5 cells at 320 px),
a binary objectness and a coarse box for each anchor; each TCB turns the ARM's map into the ODM's, adding the
upsampled TCB of the level above; the ODM classifies and regresses from the ARM-refined anchors.
"""

from __future__ import annotations

import torch
from torch import nn

from ..detection.box_coder import BoxCoder
from ..detection.criterion import ARM_REJECT
from ..detection.priors import PriorLayout
from .base import SingleShotDetector, xavier_init
from .heads import SSDHead
from .vgg import L2Norm, VGG16Trunk, scaled


class TransferConnection(nn.Module):
    def __init__(self, in_channels: int, channels: int, has_upper: bool) -> None:
        super().__init__()
        self.lateral = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.up = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2) if has_upper else None
        self.out = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor, upper: torch.Tensor | None) -> torch.Tensor:
        x = self.lateral(x)
        if self.up is not None:
            x = x + self.up(upper)
        return self.out(x)


class RefineDet(SingleShotDetector):
    """``forward(images)`` -> (arm_loc [B,A,4], arm_conf [B,A,2], odm_loc [B,A,4], odm_conf [B,A,C])."""

    def __init__(self, layout: PriorLayout, num_classes: int, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__(layout, num_classes)
        if len(layout.feature_maps) != 4:
            raise ValueError(f"RefineDet: expected 4 anchor levels, got {len(layout.feature_maps)}")
        self.trunk = VGG16Trunk(width, batch_norm, pool5_stride=2, fc6_dilation=3)
        self.norm4_3 = L2Norm(self.trunk.conv4_3_channels, scale=10.0)
        self.norm5_3 = L2Norm(self.trunk.conv4_3_channels, scale=8.0)
        self.conv6 = nn.Sequential(
            nn.Conv2d(self.trunk.fc7_channels, scaled(256, width), 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(scaled(256, width), scaled(512, width), 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        arm_channels = [
            self.trunk.conv4_3_channels,
            self.trunk.conv4_3_channels,
            self.trunk.fc7_channels,
            scaled(512, width),
        ]
        per_location = layout.priors_per_location()
        tcb = scaled(256, width)
        self.arm_head = SSDHead(arm_channels, per_location, 2)
        self.tcb = nn.ModuleList(
            TransferConnection(c, tcb, has_upper=i < len(arm_channels) - 1) for i, c in enumerate(arm_channels)
        )
        self.odm_head = SSDHead([tcb] * len(arm_channels), per_location, num_classes)
        xavier_init(self.conv6, self.tcb)
        self.box_coder = BoxCoder()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(images)
        conv4_3, conv5_3, fc7 = self.trunk.forward_all(images)
        sources = [self.norm4_3(conv4_3), self.norm5_3(conv5_3), fc7, self.conv6(fc7)]
        arm_loc, arm_conf = self.arm_head(sources)
        odm_maps: list[torch.Tensor] = []
        upper = None
        for level in range(len(sources) - 1, -1, -1):
            upper = self.tcb[level](sources[level], upper)
            odm_maps.insert(0, upper)
        odm_loc, odm_conf = self.odm_head(odm_maps)
        return arm_loc, arm_conf, odm_loc, odm_conf

    def refined_priors(self, arm_loc: torch.Tensor) -> torch.Tensor:
        """The anchors moved by the ARM's regression: [B, A, 4] normalized xyxy, no gradient (as in RefineDet)."""
        return self.box_coder.decode(arm_loc.detach(), self.priors[None])

    def detection_inputs(self, outputs):
        arm_loc, arm_conf, odm_loc, odm_conf = outputs
        rejected = arm_conf.softmax(dim=-1)[..., 1] <= ARM_REJECT
        # An anchor the ARM rejects scores background only.
        odm_conf = odm_conf.masked_fill(
            rejected[..., None] & (torch.arange(odm_conf.shape[-1], device=odm_conf.device) > 0), float("-inf")
        )
        return odm_loc, odm_conf, self.refined_priors(arm_loc)


__all__ = ["RefineDet", "TransferConnection"]
