"""Train torchvision's RetinaNet with the scale-balanced loss on the toy dataset, a few iterations on the CPU.

    python docs/examples/retinanet_scb.py [--iterations 5] [--data data/toy]

The model is torchvision's own; ``scale_balanced`` only changes how its loss weights each object's anchors.
"""

import argparse
from pathlib import Path

import torch
from PIL import Image
from torchvision.models.detection import retinanet_resnet50_fpn
from torchvision.transforms.v2.functional import pil_to_tensor

from scbloss.data import load_dataset
from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.integrations.torchvision import scale_balanced

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--iterations", type=int, default=5)
parser.add_argument("--data", type=Path, default=Path("data/toy"))
args = parser.parse_args()

if not (args.data / "toy.json").exists():
    generate_toy(args.data, ToyConfig(train_images=8, test_images=2))
data = load_dataset("toy_voc", args.data, "trainval")

torch.manual_seed(0)
model = retinanet_resnet50_fpn(
    weights=None, weights_backbone=None, num_classes=data.num_classes + 1, min_size=256, max_size=256
)
model = scale_balanced(model, weighting="scb", alpha=1.0, beta=3.0)  # W = 3 (ln M + 1) / M per object
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

history = []
model.train()
for iteration in range(args.iterations):
    records = [data.records[(2 * iteration + k) % len(data.records)] for k in range(2)]
    images = [pil_to_tensor(Image.open(r.file).convert("RGB")).float() / 255 for r in records]
    targets = [
        {"boxes": torch.from_numpy(r.boxes[r.counted()]), "labels": torch.from_numpy(r.labels[r.counted()])}
        for r in records
    ]
    losses = model(images, targets)
    loss = losses["classification"] + losses["bbox_regression"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history.append(loss.item())
    print(
        f"iteration {iteration + 1}: classification {losses['classification'].item():.4f}, "
        f"box regression {losses['bbox_regression'].item():.4f}"
    )
