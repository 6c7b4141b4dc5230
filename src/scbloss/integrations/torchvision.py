"""The scale-balanced loss inside torchvision's own SSD and RetinaNet, with their matchers and loss inputs.

    from torchvision.models.detection import retinanet_resnet50_fpn
    from scbloss.integrations.torchvision import scale_balanced

    model = scale_balanced(retinanet_resnet50_fpn(num_classes=21), weighting="scb", alpha=1.0, beta=3.0)

M of an object is the number of anchors torchvision's matcher assigns to it in that image (``matched_idxs``); the
weight W(M) (any Table 1 form, see :mod:`scbloss.detection.weighting`) multiplies the loss of each of those
anchors: their classification loss (``apply_to="cls"``), or their classification and box losses
(``"cls+loc"``). Negatives, hard-negative mining, ignored anchors and the normalizer stay torchvision's. With
``weighting="none"`` the losses are torchvision's, to the bit (the same operations in the same order).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from ..detection.weighting import check_weighting, object_weights


def anchor_weights(matched_idxs: torch.Tensor, num_objects: int, weighting: str, alpha: float, beta: float):
    """W(M) of the object each anchor is matched to (1 for anchors matched to none), for one image."""
    foreground = matched_idxs >= 0
    counts = torch.bincount(matched_idxs[foreground], minlength=num_objects)[:num_objects]
    weights = torch.ones(matched_idxs.shape, dtype=torch.float32, device=matched_idxs.device)
    object_weight = object_weights(counts, weighting, alpha, beta).to(weights.dtype)
    weights[foreground] = object_weight[matched_idxs[foreground]]
    return weights


def _ssd_loss(self, targets, head_outputs, anchors, matched_idxs):
    """torchvision's SSD.compute_loss, each positive anchor's loss weighted by its object's W(M)."""
    options = self.scale_balanced
    bbox_regression = head_outputs["bbox_regression"]
    cls_logits = head_outputs["cls_logits"]
    num_foreground = 0
    bbox_loss = []
    cls_targets = []
    weights = []
    for targets_per_image, regression, logits, anchors_per_image, matched in zip(
        targets, bbox_regression, cls_logits, anchors, matched_idxs
    ):
        foreground = torch.where(matched >= 0)[0]
        foreground_matched = matched[foreground]
        num_foreground += foreground_matched.numel()
        weight = anchor_weights(matched, len(targets_per_image["boxes"]), **options["weighting"])
        weights.append(weight)
        gt_boxes = targets_per_image["boxes"][foreground_matched]
        target_regression = self.box_coder.encode_single(gt_boxes, anchors_per_image[foreground, :])
        if options["apply_to"] == "cls+loc":
            per_anchor = F.smooth_l1_loss(regression[foreground, :], target_regression, reduction="none").sum(1)
            bbox_loss.append((per_anchor * weight[foreground]).sum())
        else:
            bbox_loss.append(F.smooth_l1_loss(regression[foreground, :], target_regression, reduction="sum"))
        classes = torch.zeros(
            (logits.size(0),), dtype=targets_per_image["labels"].dtype, device=targets_per_image["labels"].device
        )
        classes[foreground] = targets_per_image["labels"][foreground_matched]
        cls_targets.append(classes)
    bbox_loss = torch.stack(bbox_loss)
    cls_targets = torch.stack(cls_targets)
    weights = torch.stack(weights)
    num_classes = cls_logits.size(-1)
    cls_loss = F.cross_entropy(cls_logits.view(-1, num_classes), cls_targets.view(-1), reduction="none").view(
        cls_targets.size()
    )
    foreground_idxs = cls_targets > 0
    num_negative = self.neg_to_pos_ratio * foreground_idxs.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[foreground_idxs] = -float("inf")
    _, idx = negative_loss.sort(1, descending=True)
    background_idxs = idx.sort(1)[1] < num_negative
    N = max(1, num_foreground)
    return {
        "bbox_regression": bbox_loss.sum() / N,
        "classification": ((cls_loss * weights)[foreground_idxs].sum() + cls_loss[background_idxs].sum()) / N,
    }


def _retinanet_classification_loss(head, targets, head_outputs, matched_idxs, options):
    """torchvision's RetinaNetClassificationHead.compute_loss with each positive anchor's focal loss weighted."""
    losses = []
    for targets_per_image, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
        foreground = matched >= 0
        num_foreground = foreground.sum()
        gt_classes_target = torch.zeros_like(logits)
        gt_classes_target[foreground, targets_per_image["labels"][matched[foreground]]] = 1.0
        valid = matched != head.BETWEEN_THRESHOLDS
        weight = anchor_weights(matched, len(targets_per_image["boxes"]), **options["weighting"])
        loss = sigmoid_focal_loss(logits[valid], gt_classes_target[valid], reduction="none")
        losses.append((loss * weight[valid][:, None]).sum() / max(1, num_foreground))
    return sum(losses) / len(targets)


def _retinanet_regression_loss(head, targets, head_outputs, anchors, matched_idxs, options):
    """torchvision's RetinaNetRegressionHead.compute_loss with each positive anchor's box loss weighted."""
    losses = []
    for targets_per_image, regression, anchors_per_image, matched in zip(
        targets, head_outputs["bbox_regression"], anchors, matched_idxs
    ):
        foreground = torch.where(matched >= 0)[0]
        weight = anchor_weights(matched, len(targets_per_image["boxes"]), **options["weighting"])[foreground]
        gt_boxes = targets_per_image["boxes"][matched[foreground]]
        if head._loss_type in ("l1", "smooth_l1"):
            target = head.box_coder.encode_single(gt_boxes, anchors_per_image[foreground, :])
            loss = (F.l1_loss if head._loss_type == "l1" else F.smooth_l1_loss)(
                regression[foreground, :], target, reduction="none"
            ).sum(1)
        elif head._loss_type == "giou":
            decoded = head.box_coder.decode_single(regression[foreground, :], anchors_per_image[foreground, :])
            loss = generalized_box_iou_loss(decoded, gt_boxes, reduction="none")
        else:
            raise ValueError(
                f"apply_to='cls+loc' supports RetinaNet box losses l1, smooth_l1, giou, not {head._loss_type!r}"
            )
        losses.append((loss * weight).sum() / max(1, foreground.numel()))
    return sum(losses) / max(1, len(targets))


def _retinanet_loss(self, targets, head_outputs, anchors, matched_idxs):
    options = self.scale_balanced
    regression = (
        _retinanet_regression_loss(self.regression_head, targets, head_outputs, anchors, matched_idxs, options)
        if options["apply_to"] == "cls+loc"
        else self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs)
    )
    return {
        "classification": _retinanet_classification_loss(
            self.classification_head, targets, head_outputs, matched_idxs, options
        ),
        "bbox_regression": regression,
    }


def scale_balanced(model, weighting: str = "scb", alpha: float = 1.0, beta: float = 3.0, apply_to: str = "cls"):
    """Give a torchvision SSD or RetinaNet the scale-balanced loss (in place; returns the model)."""
    check_weighting(weighting, apply_to)
    options = {"weighting": {"weighting": weighting, "alpha": alpha, "beta": beta}, "apply_to": apply_to}
    if isinstance(model, SSD):
        model.scale_balanced = options
        model.compute_loss = types.MethodType(_ssd_loss, model)
    elif isinstance(model, RetinaNet):
        model.head.scale_balanced = options
        model.head.compute_loss = types.MethodType(_retinanet_loss, model.head)
    else:
        raise TypeError(f"scale_balanced takes torchvision's SSD or RetinaNet, not {type(model).__name__}")
    return model


__all__ = ["anchor_weights", "scale_balanced"]
