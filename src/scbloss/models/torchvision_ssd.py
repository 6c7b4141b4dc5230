"""torchvision's ``ssd300_vgg16`` and our SSD300 with COCO's prior layout are one network: its weights, both ways.

torchvision keeps conv1_1..conv4_3 in ``backbone.features``, conv5_x and fc6/fc7 in ``backbone.extra.0``, the L2Norm
scale of conv4_3 as ``backbone.scale_weight``, conv8..conv11 in ``backbone.extra.1-4`` and the heads in
``head.{regression,classification}_head.module_list``. Its anchors are our priors in the same order, its head
outputs are laid out as ours (cell by cell, the priors of a cell together) and its box coder is ours
(weights 10, 10, 5, 5 = variances 0.1, 0.2), so a converted model computes what torchvision's does.
"""

from __future__ import annotations

import torch

# torchvision's COCO-trained SSD300 (SSD300_VGG16_Weights.COCO_V1): 91 outputs, index = COCO category id
# (0 is the background; ids that COCO leaves unused are classes that are never labelled).
TORCHVISION_COCO_URL = "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth"
TORCHVISION_COCO_BOX_AP = 25.1  # what torchvision's model card reports on COCO val2017
TORCHVISION_COCO_CLASSES = 91
# torchvision's SSD input: 0-255 pixels minus this mean (its transform divides [0, 1] pixels by std 1/255)
TORCHVISION_SSD_MEAN = (0.48235, 0.45882, 0.40784)

_CONV_UP_TO_4_3 = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)  # torchvision's vgg16 indices, in both models
_CONV5 = {24: 1, 26: 3, 28: 5}  # our trunk.features index -> torchvision's backbone.extra.0 index


def key_map(levels: int = 6, extras: int = 4) -> dict[str, str]:
    """Our SSD300 state-dict keys -> torchvision's ssd300_vgg16 keys."""
    pairs = {f"trunk.features.{i}": f"backbone.features.{i}" for i in _CONV_UP_TO_4_3}
    pairs.update({f"trunk.features.{ours}": f"backbone.extra.0.{theirs}" for ours, theirs in _CONV5.items()})
    pairs.update({"trunk.fc.1": "backbone.extra.0.7.1", "trunk.fc.3": "backbone.extra.0.7.3"})
    for block in range(extras):
        pairs.update({f"extras.{block}.{j}": f"backbone.extra.{block + 1}.{j}" for j in (0, 2)})
    for level in range(levels):
        pairs[f"head.loc.{level}"] = f"head.regression_head.module_list.{level}"
        pairs[f"head.conf.{level}"] = f"head.classification_head.module_list.{level}"
    mapping = {f"{ours}.{kind}": f"{theirs}.{kind}" for ours, theirs in pairs.items() for kind in ("weight", "bias")}
    mapping["l2norm.weight"] = "backbone.scale_weight"
    return mapping


def _convert(state: dict[str, torch.Tensor], target_to_source: dict[str, str], source: str) -> dict:
    missing = [key for key in target_to_source.values() if key not in state]
    if missing:
        raise ValueError(f"{source}: not an SSD300 state dict of this layout (missing {', '.join(missing[:3])})")
    return {target: state[key] for target, key in target_to_source.items()}


def from_torchvision(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """torchvision's ssd300_vgg16 state dict -> ours (SSD300, COCO priors, width 1, no BatchNorm)."""
    return _convert(state, key_map(), source)


def to_torchvision(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Our SSD300 state dict -> torchvision's ssd300_vgg16 (load it with ``strict=True``)."""
    inverse = {theirs: ours for ours, theirs in key_map().items()}
    return _convert(state, inverse, source)


def conf_columns(state: dict[str, torch.Tensor], keep: list[int], classes: int = TORCHVISION_COCO_CLASSES) -> dict:
    """A converted state dict whose classification heads keep only the class columns ``keep`` (0, the background,
    first): torchvision's 91 COCO-id outputs -> a dataset's contiguous labels."""
    state = dict(state)
    for key in [k for k in state if k.startswith("head.conf.")]:
        value = state[key]
        anchors = value.shape[0] // classes
        state[key] = value.view(anchors, classes, *value.shape[1:])[:, keep].reshape(
            anchors * len(keep), *value.shape[1:]
        )
    return state


def load_torchvision_detector(model, source: str, category_ids: list[int] | None) -> str:
    """torchvision's SSD300 weights (``torchvision_coco`` or a file/URL of them) into ``model``, an SSD300 with COCO
    priors. With the dataset's COCO ``category_ids`` the heads keep those classes, in the dataset's label order;
    for another dataset every layer but the classification heads is loaded. Returns what it did."""
    from .pretrained import read_state_dict

    url = TORCHVISION_COCO_URL if source == "torchvision_coco" else source
    state = from_torchvision(read_state_dict(url), str(url))
    if model.num_classes == TORCHVISION_COCO_CLASSES:
        model.load_state_dict(state)
        return "all layers"
    if category_ids and model.num_classes == len(category_ids) + 1 and max(category_ids) < TORCHVISION_COCO_CLASSES:
        model.load_state_dict(conf_columns(state, [0, *category_ids]))
        return f"all layers, the classification heads cut to the dataset's {len(category_ids)} categories"
    state = {k: v for k, v in state.items() if not k.startswith("head.conf.")}
    model.load_state_dict(state, strict=False)
    return "all layers but the classification heads (other classes)"


__all__ = [
    "TORCHVISION_COCO_BOX_AP",
    "TORCHVISION_COCO_CLASSES",
    "TORCHVISION_COCO_URL",
    "TORCHVISION_SSD_MEAN",
    "conf_columns",
    "from_torchvision",
    "key_map",
    "load_torchvision_detector",
    "to_torchvision",
]
