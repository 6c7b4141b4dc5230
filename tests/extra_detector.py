"""An eighth detector in one module: the network and its declaration. Loaded by tests/test_registry.py through
the config's `detector_modules` (and SCBLOSS_DETECTOR_MODULES), never imported by the package itself."""

import torch
from torch import nn

from scbloss.detection.layout import PriorLayout
from scbloss.detectors import DetectorSpec, register
from scbloss.models.base import SingleShotDetector, xavier_init
from scbloss.models.heads import SSDHead
from scbloss.models.vgg import scaled

LAYOUT = PriorLayout(128, (16, 8), (8.0, 16.0), (16.0, 48.0), (48.0, 96.0), ((2,), (2,)))


class TinyDetector(SingleShotDetector):
    """Three stride-2 convolutions to a 16x16 map, one more to 8x8, SSD heads on both."""

    def __init__(self, layout: PriorLayout, num_classes: int, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__(layout, num_classes)
        channels = scaled(64, width)
        layers, in_channels = [], 3
        for _ in range(3):
            layers += [nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_channels = channels
        self.stem = nn.Sequential(*layers)
        self.down = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.head = SSDHead([channels, channels], layout.priors_per_location(), num_classes)
        xavier_init(self.stem, self.down)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        fine = self.stem(images)
        return [fine, self.down(fine)]


TINY128 = register(
    DetectorSpec(
        name="tiny128",
        network=TinyDetector,
        layouts={"voc": LAYOUT, "coco": LAYOUT},
        summary="a two-level test detector",
    )
)
