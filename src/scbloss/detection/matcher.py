"""SSD's prior-to-ground-truth matching, batched, and the per-object match counts M_i of the paper."""

from __future__ import annotations

import torch

from .iou import PriorIntervals, iou_with_own_priors


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


def match(gt_boxes: torch.Tensor, priors: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Match the priors of one image: gt_boxes [G, 4] and priors [A, 4] xyxy -> [A] ground-truth index or -1."""
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"match: gt_boxes must be [G, 4], got {list(gt_boxes.shape)}")
    if priors.dim() != 2 or priors.shape[-1] != 4:
        raise ValueError(f"match: priors must be [A, 4], got {list(priors.shape)}")
    image_of_gt = torch.zeros(gt_boxes.shape[0], dtype=torch.long, device=priors.device)
    return match_concat(gt_boxes.to(priors), image_of_gt, 1, priors, iou_threshold)[0]


def matching_counts(matched_idxs: torch.Tensor, num_gt: int) -> torch.Tensor:
    """M_i: how many priors each of ``num_gt`` ground truths holds after matching -> [G] int64.

    ``matched_idxs`` is any tensor of ground-truth indices or -1, e.g. :func:`match`'s [A] or match_concat's [B, A].
    """
    assigned = matched_idxs[matched_idxs >= 0]
    return torch.bincount(assigned, minlength=num_gt)[:num_gt]


__all__ = ["match", "match_concat", "matching_counts"]
