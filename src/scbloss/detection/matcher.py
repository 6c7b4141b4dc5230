"""SSD's prior-to-ground-truth matching, batched, and the per-object match counts M_i of the paper.

The loss matches padded targets ([B, G] objects per batch, a validity mask) with fixed-shape tensor code
(:func:`match_padded`): no ``nonzero``, no boolean-mask indexing, nothing that waits on the device, so it
compiles into one graph. :func:`match` and :func:`match_concat` are the same matching for one image and for the
concatenated form the matching statistics use.
"""

from __future__ import annotations

import torch

from .iou import PriorIntervals, iou_padded


def match_padded(iou: torch.Tensor, valid: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Match every image's priors from the IoU [B, G, A] of its G (padded) ground truths, ``valid`` [B, G] marking
    the real ones. Returns [B, A] int64: the ground truth's slot in 0..G-1, or -1 for background.

    A prior takes its best ground truth when their IoU >= ``iou_threshold`` (the lower slot on a tie: max's first
    maximum); then every ground truth is forced onto its own best prior (argmax's first), whatever that IoU. When
    several ground truths share a best prior the later one keeps it, as in ssd.pytorch's sequential loop.
    """
    batch, slots, num_priors = iou.shape
    if slots == 0:
        return torch.full((batch, num_priors), -1, dtype=torch.long, device=iou.device)
    iou = iou.masked_fill(~valid[..., None], -1.0)  # padding never wins a prior
    best_iou, best_gt = iou.max(dim=1)
    matched = torch.where(best_iou >= iou_threshold, best_gt, -1)
    slot = torch.arange(slots, device=iou.device).expand(batch, slots)
    # amax makes "the later ground truth wins" deterministic, unlike an index assignment with duplicate indices;
    # padding offers -1, which never beats the fill
    forced_owner = torch.full_like(matched, -1).scatter_reduce(
        1, iou.argmax(dim=2), torch.where(valid, slot, -1), reduce="amax"
    )
    return torch.where(forced_owner >= 0, forced_owner, matched)


def iou_of(boxes: torch.Tensor, priors: torch.Tensor | PriorIntervals) -> torch.Tensor:
    """IoU [B, G, A] of padded boxes [B, G, 4] with shared priors (a tensor or its :class:`PriorIntervals`, the
    eager shortcut) or per-image priors [B, A, 4]."""
    if isinstance(priors, PriorIntervals):
        batch, slots = boxes.shape[:2]
        return priors.iou(boxes.reshape(-1, 4)).view(batch, slots, -1)
    return iou_padded(boxes, priors)


def match_concat(
    gt_boxes: torch.Tensor,
    image_of_gt: torch.Tensor,
    num_images: int,
    priors: torch.Tensor | PriorIntervals,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """:func:`match_padded` for ground truths concatenated image after image (the tools' form, not the loss's).

    gt_boxes: [S, 4] xyxy; image_of_gt: [S] image index of each, non-decreasing; priors: [A, 4] shared (or their
    :class:`PriorIntervals`), or [B, A, 4] each image its own. Returns [num_images, A] int64: for each prior the row
    in ``gt_boxes`` of its ground truth, or -1 for background. Reads the per-image counts on the host.
    """
    counts = torch.bincount(image_of_gt, minlength=num_images)
    start = counts.cumsum(0) - counts
    slot = torch.arange(gt_boxes.shape[0], device=gt_boxes.device) - start[image_of_gt]
    slots = int(counts.max()) if gt_boxes.shape[0] else 0
    boxes = gt_boxes.new_zeros(num_images, slots, 4)
    boxes[image_of_gt, slot] = gt_boxes
    valid = torch.zeros(num_images, slots, dtype=torch.bool, device=gt_boxes.device)
    valid[image_of_gt, slot] = True
    matched = match_padded(iou_of(boxes, priors), valid, iou_threshold)
    return torch.where(matched >= 0, matched + start[:, None].to(matched.device), -1)


def match(gt_boxes: torch.Tensor, priors: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Match the priors of one image: gt_boxes [G, 4] and priors [A, 4] xyxy -> [A] ground-truth index or -1."""
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"match: gt_boxes must be [G, 4], got {list(gt_boxes.shape)}")
    if priors.dim() != 2 or priors.shape[-1] != 4:
        raise ValueError(f"match: priors must be [A, 4], got {list(priors.shape)}")
    valid = torch.ones(1, gt_boxes.shape[0], dtype=torch.bool, device=priors.device)
    return match_padded(iou_padded(gt_boxes.to(priors)[None], priors), valid, iou_threshold)[0]


def matching_counts(matched_idxs: torch.Tensor, num_gt: int) -> torch.Tensor:
    """M_i: how many priors each of ``num_gt`` ground truths holds after matching -> [num_gt] int64.

    ``matched_idxs`` is any tensor of ground-truth indices in 0..num_gt-1 or -1, e.g. :func:`match`'s [A] or
    match_concat's [B, A]. A scatter-add into a fixed-size tensor (-1 counted in a spare slot, then dropped).
    """
    flat = matched_idxs.reshape(-1)
    slot = torch.where(flat >= 0, flat, num_gt)
    return torch.zeros(num_gt + 1, dtype=torch.long, device=flat.device).scatter_add_(0, slot, torch.ones_like(slot))[
        :num_gt
    ]


def padded_counts(matched: torch.Tensor, slots: int) -> torch.Tensor:
    """M_i of padded ground truths: [B, A] slots (or -1) from :func:`match_padded` -> [B, slots] int64."""
    offset = torch.arange(matched.shape[0], device=matched.device)[:, None] * slots
    return matching_counts(torch.where(matched >= 0, matched + offset, -1), matched.shape[0] * slots).view(-1, slots)


__all__ = ["iou_of", "match", "match_concat", "match_padded", "matching_counts", "padded_counts"]
