"""SSD's MultiBox loss with hard negative mining and the scale-balanced per-object weighting.

The loss proper (:meth:`MultiBoxLoss.forward_padded`) takes targets padded to a fixed number of objects per image
and is fixed-shape tensor code throughout: no ``.item()``, ``nonzero`` or boolean-mask indexing, no Python branch
on a tensor's values. So ``torch.compile(fullgraph=True)`` captures it with the network in one graph, which CUDA
graphs can replay. Padding (:func:`pad_targets`) is the one host-side step, run before the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .box_coder import BoxCoder
from .iou import PriorIntervals
from .matcher import iou_of, match_padded, padded_counts
from .weighting import check_weighting, object_weights

Target = dict[str, torch.Tensor]

MIN_OBJECTS = 16  # the smallest per-image object cap: VOC images hold up to 42 objects, COCO's up to ~90


class PaddedTargets(NamedTuple):
    """A batch's ground truth at a fixed number of objects per image (the cap): unused slots are padding."""

    boxes: torch.Tensor  # [B, G, 4] xyxy, zeros in padding
    labels: torch.Tensor  # [B, G] int64 in 1..C, 0 in padding
    valid: torch.Tensor  # [B, G] bool: a real object


def object_cap(most: int, cap: int = MIN_OBJECTS) -> int:
    """The cap for a batch whose fullest image holds ``most`` objects: ``cap`` while they fit, else the next power of
    two (so a run recompiles at most a few times as fuller images come, and the cap never shrinks)."""
    return cap if most <= cap else 1 << (most - 1).bit_length()


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Labels must lie in 1..num_classes (0 is background).

    On the CPU, a ValueError naming the range found. On an accelerator the same condition is a device-side
    assertion (``torch._assert_async``): checking there on the host would make the CPU wait for the GPU every step,
    which is what the fixed-shape loss exists to avoid; a bad label then stops the run at its next synchronisation.
    """
    if not labels.numel():
        return
    if labels.device.type == "cpu":
        low, high = int(labels.min()), int(labels.max())
        if low < 1 or high > num_classes:
            raise ValueError(f"targets: labels must lie in 1..{num_classes} (0 is background), got {low}..{high}")
    else:
        in_range = ((labels >= 1) & (labels <= num_classes)).all()
        torch._assert_async(in_range, f"targets: labels must lie in 1..{num_classes} (0 is background)")


def pad_targets(
    targets: Sequence[Target],
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype,
    cap: int = MIN_OBJECTS,
) -> PaddedTargets:
    """Per-image target dicts ({"boxes": [G, 4], "labels": [G]}) -> :class:`PaddedTargets` with room for
    :func:`object_cap` objects per image. A batch with more objects than ``cap`` grows it; nothing is truncated.

    Shapes are read from the tensors' sizes (host metadata), so nothing waits on the device; the labels are checked
    by :func:`check_labels`.
    """
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
    counts = [t["boxes"].shape[0] for t in targets]
    slots = object_cap(max(counts, default=0), cap)
    labels = torch.cat([t["labels"].to(dtype=torch.long) for t in targets]) if targets else torch.zeros(0)
    check_labels(labels, num_classes)
    image = torch.tensor([b for b, n in enumerate(counts) for _ in range(n)], dtype=torch.long)
    slot = torch.tensor([s for n in counts for s in range(n)], dtype=torch.long)
    padded = PaddedTargets(
        torch.zeros(len(targets), slots, 4, dtype=dtype, device=device),
        torch.zeros(len(targets), slots, dtype=torch.long, device=device),
        torch.zeros(len(targets), slots, dtype=torch.bool, device=device),
    )
    if image.numel():
        where = (image.to(device), slot.to(device))
        padded.boxes[where] = torch.cat([t["boxes"].to(device=device, dtype=dtype) for t in targets])
        padded.labels[where] = labels.to(device)
        padded.valid[where] = True
    return padded


def hard_negative_mask(neg_loss: torch.Tensor, num_neg: torch.Tensor) -> torch.Tensor:
    """Per image, mark the ``num_neg[b]`` entries with the largest ``neg_loss`` (positives must be set to -inf).

    Each entry's rank in its image's descending (stable) sort is compared with the count: a fixed shape, however
    many negatives an image keeps. Equal losses rank by prior index.
    """
    order = neg_loss.argsort(dim=1, descending=True, stable=True)
    ranks = torch.arange(neg_loss.shape[1], device=neg_loss.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, ranks)
    return rank < num_neg[:, None]


class MultiBoxLoss(nn.Module):
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
        self.object_cap = MIN_OBJECTS  # objects per image in the padded targets; grows with the fullest image seen
        self._cached_intervals: PriorIntervals | None = None

    def forward(
        self,
        loc_pred: torch.Tensor,
        conf_pred: torch.Tensor,
        priors: torch.Tensor,
        targets: Sequence[Target],
        not_negative: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss of per-image target dicts: :meth:`pad` them, then :meth:`forward_padded`."""
        padded = self.pad(targets, conf_pred.shape[-1] - 1, priors.device, priors.dtype)
        return self.forward_padded(loc_pred, conf_pred, priors, padded, not_negative)

    def pad(
        self, targets: Sequence[Target], num_classes: int, device: torch.device, dtype: torch.dtype
    ) -> PaddedTargets:
        """:func:`pad_targets` at this loss's object cap, which grows (never shrinks) with the fullest image seen."""
        padded = pad_targets(targets, num_classes, device, dtype, self.object_cap)
        self.object_cap = padded.boxes.shape[1]
        return padded

    def forward_padded(
        self,
        loc_pred: torch.Tensor,
        conf_pred: torch.Tensor,
        priors: torch.Tensor,
        targets: PaddedTargets,
        not_negative: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``priors`` is [A, 4], or [B, A, 4] when each image has its own (RefineDet's ODM); ``not_negative`` [B, A]
        marks priors that may not be mined as negatives (RefineDet's anchors the ARM already rejects)."""
        batch, num_priors, num_logits = self._check_shapes(loc_pred, conf_pred, priors, targets.boxes.shape[0])
        boxes = targets.boxes.to(priors.dtype)

        with torch.no_grad():
            matched = match_padded(self._iou(boxes, priors), targets.valid, self.iou_threshold)  # [B, A] slot or -1
            positive = matched >= 0
            slot = matched.clamp(min=0)
            counts = padded_counts(matched, boxes.shape[1])  # M_i of every object, [B, G]
            weights = object_weights(counts, self.weighting, self.alpha, self.beta).to(conf_pred.dtype)
            pos_weight = torch.where(positive, weights.gather(1, slot), 0.0)
            class_target = torch.where(positive, targets.labels.gather(1, slot), 0)
            # background priors encode against themselves: a finite target (zero) where the loss is masked anyway
            matched_boxes = torch.where(positive[..., None], boxes.gather(1, slot[..., None].expand(-1, -1, 4)), priors)
            loc_target = self.box_coder.encode(matched_boxes, priors)

        cross_entropy = F.cross_entropy(
            conf_pred.reshape(-1, num_logits), class_target.view(-1), reduction="none"
        ).view(batch, num_priors)

        num_pos_per_image = positive.sum(dim=1)
        with torch.no_grad():
            excluded = positive if not_negative is None else positive | not_negative
            # excluded holds the positives, so this is also at most the priors that are not positive
            num_neg = torch.minimum(self.neg_pos_ratio * num_pos_per_image, num_priors - excluded.sum(dim=1))
            negative = hard_negative_mask(cross_entropy.detach().masked_fill(excluded, float("-inf")), num_neg)

        num_pos = num_pos_per_image.sum()
        cls_per_image = (cross_entropy * pos_weight).sum(dim=1) + torch.where(negative, cross_entropy, 0.0).sum(dim=1)
        loc_loss = F.smooth_l1_loss(loc_pred, loc_target.to(loc_pred.dtype), reduction="none").sum(dim=2)
        loc_loss = torch.where(positive, loc_loss * pos_weight if self.apply_to == "cls+loc" else loc_loss, 0.0)
        loc_per_image = loc_loss.sum(dim=1).to(cls_per_image.dtype)
        if self.images_per_normalizer:
            groups = -(-batch // self.images_per_normalizer)
            image_group = torch.arange(batch, device=conf_pred.device) // self.images_per_normalizer
            normalizer = torch.zeros(groups, dtype=conf_pred.dtype, device=conf_pred.device).index_add(
                0, image_group, num_pos_per_image.clamp(min=1).to(conf_pred.dtype)
            )
            cls_sums = torch.zeros_like(normalizer).index_add(0, image_group, cls_per_image)
            loc_sums = torch.zeros_like(normalizer).index_add(0, image_group, loc_per_image)
            loss_cls, loss_loc = (cls_sums / normalizer).mean(), (loc_sums / normalizer).mean()
        else:
            normalizer = (self.normalizer(num_pos) if self.normalizer else num_pos.clamp(min=1)).to(conf_pred.dtype)
            loss_cls = cls_per_image.sum() / normalizer
            loss_loc = loc_per_image.sum() / normalizer

        return {"loss_cls": loss_cls, "loss_loc": loss_loc, "num_pos": num_pos}

    def _iou(self, boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """[B, G, A]. Shared priors [A, 4] go through their interval split when eager; compiled, the broadcast IoU
        fuses into one kernel instead. Both equal box_iou's to the bit."""
        if priors.dim() == 2 and not torch.compiler.is_compiling():
            return iou_of(boxes, self._intervals(priors))
        return iou_of(boxes, priors)

    def _intervals(self, priors: torch.Tensor) -> PriorIntervals:
        """The priors' interval split, rebuilt only when other priors come in (models keep theirs fixed)."""
        if self._cached_intervals is None or not self._cached_intervals.describes(priors):
            self._cached_intervals = PriorIntervals(priors)
        return self._cached_intervals

    @staticmethod
    def _check_shapes(
        loc_pred: torch.Tensor, conf_pred: torch.Tensor, priors: torch.Tensor, num_targets: int
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
        if num_targets != loc_pred.shape[0]:
            raise ValueError(f"MultiBoxLoss: {num_targets} targets for a batch of {loc_pred.shape[0]} images")
        return loc_pred.shape[0], num_priors, conf_pred.shape[2]


__all__ = [
    "MIN_OBJECTS",
    "MultiBoxLoss",
    "PaddedTargets",
    "check_labels",
    "hard_negative_mask",
    "object_cap",
    "pad_targets",
]
