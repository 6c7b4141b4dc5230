"""Turning SSD head outputs into scored, class-labelled, de-duplicated detections."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from .box_coder import BoxCoder


def postprocess(
    loc_pred: torch.Tensor,
    conf_pred: torch.Tensor,
    priors: torch.Tensor,
    score_threshold: float = 0.01,
    nms_iou: float = 0.45,
    top_k: int = 200,
    pre_nms_top_k: int | None = 400,
    variances: tuple[float, float] = (0.1, 0.2),
) -> list[dict[str, torch.Tensor]]:
    """Decode (clipped to the image), softmax, per-class NMS and keep the ``top_k`` best detections of each image.

    loc_pred [B, A, 4], conf_pred [B, A, C+1] (logits, background first), priors [A, 4] normalized xyxy (or
    [B, A, 4], each image its own).
    ``pre_nms_top_k`` caps the candidates of each class before NMS, as the Caffe SSD's test recipe does (400);
    None keeps every candidate above the threshold. Returns per image ``boxes`` [K, 4] (normalized xyxy),
    ``scores`` [K] and ``labels`` [K] in 1..C, sorted by decreasing score.
    """
    if loc_pred.dim() != 3 or conf_pred.dim() != 3 or loc_pred.shape[:2] != conf_pred.shape[:2]:
        raise ValueError(
            f"postprocess: expected loc [B, A, 4] and conf [B, A, C+1], got {list(loc_pred.shape)} "
            f"and {list(conf_pred.shape)}"
        )
    shared_priors = priors[None] if priors.dim() == 2 else priors
    boxes_all = BoxCoder(variances).decode(loc_pred, shared_priors).clamp_(0.0, 1.0)  # inside the image, as torchvision
    scores_all = conf_pred.softmax(dim=-1)[..., 1:]  # [B, A, C]
    num_priors, num_classes = scores_all.shape[1:]
    results = []
    for boxes, scores in zip(boxes_all, scores_all):
        if pre_nms_top_k is not None and pre_nms_top_k < num_priors:
            scores, prior_idx = scores.topk(pre_nms_top_k, dim=0)  # [k, C] per class
        else:
            prior_idx = torch.arange(num_priors, device=scores.device)[:, None].expand(-1, num_classes)
        class_idx = torch.arange(num_classes, device=scores.device).expand_as(scores)
        keep = scores > score_threshold
        cand_scores, cand_priors, cand_labels = scores[keep], prior_idx[keep], class_idx[keep] + 1
        cand_boxes = boxes[cand_priors]
        kept = batched_nms(cand_boxes, cand_scores, cand_labels, nms_iou)[:top_k]
        results.append({"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": cand_labels[kept]})
    return results


__all__ = ["postprocess"]
