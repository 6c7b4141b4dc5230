"""The loss as it was before the fixed-shape rewrite (git 1391484), kept as the tests' reference.

Concatenated targets, matching over the pairs above the threshold (``nonzero``), hard negatives by ``topk`` of the
largest count (``.item()``), positives gathered by index. :mod:`scbloss.detection.loss` must equal it on the same
batches (tests/test_fixed_shape.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_area

from scbloss.detection.box_coder import BoxCoder
from scbloss.detection.iou import PriorIntervals
from scbloss.detection.weighting import check_weighting, object_weights

Target = dict[str, torch.Tensor]


def iou_with_own_priors(boxes: torch.Tensor, image_of_box: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """IoU of boxes [S, 4] with the priors of their own image, priors [B, A, 4] (e.g. RefineDet's refined anchors,
    which differ per image) -> [S, A]. Written out because torchvision's box_iou has no batch dimension."""
    own = priors[image_of_box]  # [S, A, 4]
    boxes = boxes.to(priors.dtype)[:, None, :]
    overlap = (torch.minimum(boxes[..., 2:], own[..., 2:]) - torch.maximum(boxes[..., :2], own[..., :2])).clamp_(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes[:, 0])[:, None] + box_area(own.reshape(-1, 4)).view(own.shape[:2]) - inter
    return inter / union


def match_concat(
    gt_boxes: torch.Tensor,
    image_of_gt: torch.Tensor,
    num_images: int,
    priors: torch.Tensor | PriorIntervals,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Match the priors of a batch whose ground truths are concatenated.

    gt_boxes: [S, 4] xyxy, all images' boxes one after another; image_of_gt: [S] image index of each, non-decreasing;
    priors: [A, 4] xyxy shared by all images (or their :class:`PriorIntervals`), or [B, A, 4], each image its own.
    Returns [num_images, A] int64: for each prior the row in ``gt_boxes`` of its ground truth, or -1 for background.

    A prior takes its best ground truth of the same image when their IoU >= ``iou_threshold`` (the lower index on a
    tie); then every ground truth is forced onto its own best prior, whatever that IoU. When several ground truths
    share a best prior the later one keeps it, as in ssd.pytorch's sequential loop.
    """
    per_image = isinstance(priors, torch.Tensor) and priors.dim() == 3
    if not per_image and not isinstance(priors, PriorIntervals):
        priors = PriorIntervals(priors)
    num_priors = priors.shape[1] if per_image else priors.area.shape[0]
    device = priors.device if per_image else priors.area.device
    matched = torch.full((num_images * num_priors,), -1, dtype=torch.long, device=device)
    if gt_boxes.shape[0] == 0:
        return matched.view(num_images, num_priors)
    iou = iou_with_own_priors(gt_boxes, image_of_gt, priors) if per_image else priors.iou(gt_boxes)  # [S, A]
    gt_rows = torch.arange(gt_boxes.shape[0], device=device)

    # Pairs above the threshold are few (tens per object): resolve "best ground truth per prior" on them alone.
    pair_gt, pair_prior = (iou >= iou_threshold).nonzero(as_tuple=True)
    if pair_gt.numel():
        pair_iou = iou[pair_gt, pair_prior]
        slot = image_of_gt[pair_gt] * num_priors + pair_prior
        best_iou = torch.full(matched.shape, -1.0, dtype=iou.dtype, device=device)
        best_iou.scatter_reduce_(0, slot, pair_iou, reduce="amax")
        winner = pair_iou == best_iou[slot]
        first = torch.full_like(matched, gt_boxes.shape[0])
        first.scatter_reduce_(0, slot[winner], pair_gt[winner], reduce="amin")
        matched = torch.where(first < gt_boxes.shape[0], first, matched)

    forced_slot = image_of_gt * num_priors + iou.argmax(dim=1)
    # amax makes "the later ground truth wins" deterministic, unlike an index assignment with duplicate indices.
    forced_owner = torch.full_like(matched, -1).scatter_reduce_(0, forced_slot, gt_rows, reduce="amax")
    return torch.where(forced_owner >= 0, forced_owner, matched).view(num_images, num_priors)


def matching_counts(matched_idxs: torch.Tensor, num_gt: int) -> torch.Tensor:
    assigned = matched_idxs[matched_idxs >= 0]
    return torch.bincount(assigned, minlength=num_gt)[:num_gt]


def concat_targets(
    targets: Sequence[Target], num_classes: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All images' boxes [S, 4] and labels [S] one after another, and the image index of each [S]."""
    for index, target in enumerate(targets):
        boxes, labels = target.get("boxes"), target.get("labels")
        if boxes is None or labels is None:
            raise ValueError(f"target {index}: needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"target {index}: boxes must be [G, 4], got {list(boxes.shape)}")
        if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"target {index}: labels must be [G] with G = {boxes.shape[0]} boxes, got {list(labels.shape)}"
            )
    boxes = torch.cat([t["boxes"].to(device=device, dtype=dtype) for t in targets])
    labels = torch.cat([t["labels"].to(device=device, dtype=torch.long) for t in targets])
    counts = torch.tensor([t["boxes"].shape[0] for t in targets], device=device)
    image_of_gt = torch.repeat_interleave(torch.arange(len(targets), device=device), counts)
    if labels.numel() and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(
            f"targets: labels must lie in 1..{num_classes} (0 is background), "
            f"got {labels.min().item()}..{labels.max().item()}"
        )
    return boxes, labels, image_of_gt


def hard_negative_mask(neg_loss: torch.Tensor, num_neg: torch.Tensor) -> torch.Tensor:
    """Per image, mark the ``num_neg[b]`` entries with the largest ``neg_loss`` (positives must be set to -inf)."""
    most = int(num_neg.max().item()) if num_neg.numel() else 0
    mask = torch.zeros_like(neg_loss, dtype=torch.bool)
    if most == 0:
        return mask
    # topk of the largest count instead of a full sort: the counts are a few hundred out of thousands of priors.
    _, order = neg_loss.topk(most, dim=1)
    keep = torch.arange(most, device=neg_loss.device)[None, :] < num_neg[:, None]
    return mask.scatter_(1, order, keep)


class ReferenceMultiBoxLoss(nn.Module):
    """SSD's loss, with each positive prior weighted by the W(M) of the object it matched.

    ``apply_to="cls"`` (default) follows the authors' released code: W multiplies the classification loss of the
    positive priors only, while the localization loss, the negatives, the hard-negative count and the normalizer N
    stay unweighted. ``apply_to="cls+loc"`` also weights each positive prior's localization loss, as the paper's
    Eq. (2) reads (W_i multiplies the whole per-anchor loss L). Both terms are divided by the number of positive
    priors in the batch (at least 1); an image without objects has no positives and so, as in SSD, no negatives.
    """

    def __init__(
        self,
        weighting: str = "scb",
        alpha: float = 1.0,
        beta: float = 3.0,
        apply_to: str = "cls",
        neg_pos_ratio: int = 3,
        variances: tuple[float, float] = (0.1, 0.2),
        iou_threshold: float = 0.5,
        normalizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
        images_per_normalizer: int | None = None,
    ) -> None:
        super().__init__()
        check_weighting(weighting, apply_to)
        self.weighting, self.alpha, self.beta, self.apply_to = weighting, alpha, beta, apply_to
        self.neg_pos_ratio = neg_pos_ratio
        self.iou_threshold = iou_threshold
        self.box_coder = BoxCoder(variances)
        self.normalizer = normalizer  # positives of the batch -> N; under DDP the global count / processes
        # mmdetection's: each group of this many images (one GPU's) / its positives, each image at least 1, the
        # groups averaged (SCB_Loss mmdet/core/anchor/anchor_target.py L71, mmdet/models/anchor_heads/ssd_head.py)
        self.images_per_normalizer = images_per_normalizer
        self._cached_intervals: PriorIntervals | None = None

    def forward(
        self,
        loc_pred: torch.Tensor,
        conf_pred: torch.Tensor,
        priors: torch.Tensor,
        targets: Sequence[Target],
        not_negative: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``priors`` is [A, 4], or [B, A, 4] when each image has its own (RefineDet's ODM); ``not_negative`` [B, A]
        marks priors that may not be mined as negatives (RefineDet's anchors the ARM already rejects)."""
        batch, num_priors, num_logits = self._check_shapes(loc_pred, conf_pred, priors, targets)
        gt_boxes, gt_labels, image_of_gt = concat_targets(targets, num_logits - 1, priors.device, priors.dtype)
        shared = priors.dim() == 2

        with torch.no_grad():
            matched = match_concat(
                gt_boxes, image_of_gt, batch, self._intervals(priors) if shared else priors, self.iou_threshold
            )
            positive = matched >= 0
            pos_image, pos_prior = positive.nonzero(as_tuple=True)
            pos_gt = matched[pos_image, pos_prior]
            counts = matching_counts(pos_gt, gt_boxes.shape[0])  # M_i of every object in the batch
            pos_weight = object_weights(counts, self.weighting, self.alpha, self.beta).to(conf_pred.dtype)[pos_gt]
            class_target = torch.zeros_like(matched)
            class_target[pos_image, pos_prior] = gt_labels[pos_gt]

        cross_entropy = F.cross_entropy(
            conf_pred.reshape(-1, num_logits), class_target.view(-1), reduction="none"
        ).view(batch, num_priors)

        num_pos_per_image = positive.sum(dim=1)
        num_neg = torch.minimum(self.neg_pos_ratio * num_pos_per_image, num_priors - num_pos_per_image)
        with torch.no_grad():
            excluded = positive if not_negative is None else positive | not_negative
            num_neg = torch.minimum(num_neg, num_priors - excluded.sum(dim=1))
            negative = hard_negative_mask(cross_entropy.detach().masked_fill(excluded, float("-inf")), num_neg)

        num_pos = num_pos_per_image.sum()
        positive_ce = cross_entropy[pos_image, pos_prior] * pos_weight
        pos_priors = priors[pos_prior] if shared else priors[pos_image, pos_prior]
        loc_target = self.box_coder.encode(gt_boxes[pos_gt], pos_priors)
        loc_loss = F.smooth_l1_loss(
            loc_pred[pos_image, pos_prior], loc_target.to(loc_pred.dtype), reduction="none"
        ).sum(dim=1)
        if self.apply_to == "cls+loc":
            loc_loss = loc_loss * pos_weight
        if self.images_per_normalizer:
            group = pos_image // self.images_per_normalizer
            groups = -(-batch // self.images_per_normalizer)
            image_group = torch.arange(batch, device=conf_pred.device) // self.images_per_normalizer
            normalizer = torch.zeros(groups, dtype=conf_pred.dtype, device=conf_pred.device).index_add_(
                0, image_group, num_pos_per_image.clamp(min=1).to(conf_pred.dtype)
            )
            negative_ce = (cross_entropy * negative).sum(dim=1)
            cls_sums = torch.zeros_like(normalizer).index_add_(0, group, positive_ce)
            cls_sums = cls_sums.index_add_(0, image_group, negative_ce)
            loc_sums = torch.zeros_like(normalizer).index_add_(0, group, loc_loss.to(normalizer.dtype))
            loss_cls, loss_loc = (cls_sums / normalizer).mean(), (loc_sums / normalizer).mean()
        else:
            normalizer = (self.normalizer(num_pos) if self.normalizer else num_pos.clamp(min=1)).to(conf_pred.dtype)
            loss_cls = (positive_ce.sum() + cross_entropy[negative].sum()) / normalizer
            loss_loc = loc_loss.sum() / normalizer

        return {"loss_cls": loss_cls, "loss_loc": loss_loc, "num_pos": num_pos}

    def _intervals(self, priors: torch.Tensor) -> PriorIntervals:
        """The priors' interval split, rebuilt only when another prior tensor comes in (models keep theirs fixed)."""
        if self._cached_intervals is None or not self._cached_intervals.describes(priors):
            self._cached_intervals = PriorIntervals(priors)
        return self._cached_intervals

    @staticmethod
    def _check_shapes(
        loc_pred: torch.Tensor, conf_pred: torch.Tensor, priors: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[int, int, int]:
        if (
            priors.dim() not in (2, 3)
            or priors.shape[-1] != 4
            or (priors.dim() == 3 and priors.shape[0] != loc_pred.shape[0])
        ):
            raise ValueError(f"MultiBoxLoss: priors must be [A, 4] or [B, A, 4], got {list(priors.shape)}")
        num_priors = priors.shape[-2]
        if loc_pred.dim() != 3 or loc_pred.shape[1:] != (num_priors, 4):
            raise ValueError(f"MultiBoxLoss: loc_pred must be [B, {num_priors}, 4], got {list(loc_pred.shape)}")
        if conf_pred.dim() != 3 or conf_pred.shape[:2] != loc_pred.shape[:2] or conf_pred.shape[2] < 2:
            raise ValueError(
                f"MultiBoxLoss: conf_pred must be [B, {num_priors}, C+1] with the batch of loc_pred "
                f"{list(loc_pred.shape)} and C >= 1, got {list(conf_pred.shape)}"
            )
        if loc_pred.shape[0] == 0:
            raise ValueError("MultiBoxLoss: empty batch")
        if len(targets) != loc_pred.shape[0]:
            raise ValueError(f"MultiBoxLoss: {len(targets)} targets for a batch of {loc_pred.shape[0]} images")
        return loc_pred.shape[0], num_priors, conf_pred.shape[2]


__all__ = ["ReferenceMultiBoxLoss", "hard_negative_mask", "match_concat"]
