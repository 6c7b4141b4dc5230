"""Running a trained detector over a dataset: detections in original image pixels, as COCO result JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..atomic import write_text
from ..data.loader import DetectionDataset, batches, make_loader
from ..data.records import DetectionSet, from_mmdet_v1
from ..data.transforms import eval_transform, normalization
from ..detection import postprocess
from ..detection.priors import detections_from_priors_frame


@torch.no_grad()
def predict(
    model: nn.Module,
    data: DetectionSet,
    batch_size: int = 16,
    num_workers: int = 2,
    score_threshold: float = 0.01,
    pre_nms_top_k: int | None = 400,
    per_image: int = 200,
    device: torch.device | str = "cpu",
    progress: bool = True,
    memory_format: torch.memory_format = torch.contiguous_format,
    normalize: tuple | None = None,
    category_of: list[int] | None = None,
) -> list[dict]:
    """Detections of every image as COCO result entries: image_id, category_id, bbox [x, y, w, h] px, score.

    Post-processing is SSD's: softmax, at most ``pre_nms_top_k`` candidates per class (None: all), per-class NMS at
    0.45, the ``per_image`` best per image, score > ``score_threshold``. Boxes are in the data's convention
    (:func:`scbloss.data.records.from_mmdet_v1` for a model with mmdetection v1's anchors).
    ``category_id`` is the dataset's own id (COCO's category ids; 1..20 for VOC). ``memory_format`` is the one the
    model trained in (channels_last under bf16); ``normalize`` the (mean, std) its backbone weights expect
    (ImageNet's by default); ``category_of`` the category id of each label (the dataset's, by default).
    """
    model.eval().to(device, memory_format=memory_format)
    loader = make_loader(
        DetectionDataset(data, input_transform(model, normalize), train=False),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    category_of = category_of or data.category_ids or list(range(1, data.num_classes + 1))
    results = []
    with batches(loader) as iterator:  # workers stopped however the loop ends
        for images, targets in tqdm(iterator, total=len(loader), desc="predict", disable=not progress, mininterval=10):
            found = detect_batch(
                model,
                images,
                [target["orig_size"] for target in targets],
                data.kind,
                score_threshold=score_threshold,
                pre_nms_top_k=pre_nms_top_k,
                per_image=per_image,
                device=device,
                memory_format=memory_format,
            )
            for detections, target in zip(found, targets):
                results.extend(coco_results(target["image_id"], detections, category_of))
    return results


def input_transform(model: nn.Module, normalize: tuple | None = None):
    """The test-time preprocessing of ``model``: a uint8 image -> the normalized, resized input it takes."""
    return eval_transform(model.layout.image_size, *(normalize or normalization("imagenet")))


def trained_memory_format(channels_last: bool, device: torch.device | str) -> torch.memory_format:
    """The memory format a model trained in (its metadata's ``channels_last``), where the device honours it."""
    return torch.channels_last if channels_last and torch.device(device).type == "cuda" else torch.contiguous_format


@torch.no_grad()
def detect_batch(
    model: nn.Module,
    images: torch.Tensor,
    sizes: list[tuple[int, int]],
    annotation_format: str,
    score_threshold: float = 0.01,
    pre_nms_top_k: int | None = 400,
    per_image: int = 200,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[dict[str, torch.Tensor]]:
    """Detections of a batch of preprocessed images (see :func:`input_transform`), per image: ``boxes`` [K, 4] xyxy
    in the pixels of its original (height, width) in ``sizes``, ``scores`` and ``labels`` (1..C), best first.

    ``annotation_format`` ("voc" or "coco") is the box convention of the data the model learnt from; it matters
    for a model with mmdetection v1's anchors only (:func:`scbloss.data.records.from_mmdet_v1`).
    """
    loc, conf, priors = model.detection_inputs(model(images.to(device, memory_format=memory_format)))
    outputs = postprocess(
        loc.float(), conf.float(), priors, score_threshold, top_k=per_image, pre_nms_top_k=pre_nms_top_k
    )
    found = []
    for detections, (height, width) in zip(outputs, sizes):
        boxes = detections_from_priors_frame(model.layout, detections["boxes"].cpu())
        boxes = boxes * torch.tensor([width, height, width, height])
        if model.layout.generator == "mmdet_v1":
            boxes = from_mmdet_v1(boxes, annotation_format)
        found.append({"boxes": boxes, "scores": detections["scores"].cpu(), "labels": detections["labels"].cpu()})
    return found


def coco_results(image_id: int, detections: dict[str, torch.Tensor], category_of: list[int]) -> list[dict]:
    """One image's detections (of :func:`detect_batch`) as COCO result entries; ``category_of[l - 1]`` is the
    category id of label l."""
    boxes = detections["boxes"]
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    scored = zip(xywh.tolist(), detections["scores"].tolist(), detections["labels"].tolist())
    return [
        {
            "image_id": image_id,
            "category_id": category_of[label - 1],
            "bbox": [round(v, 2) for v in box],
            "score": round(score, 5),
        }
        for box, score, label in scored
    ]


def write_json(obj, path: Path) -> None:
    write_text(path, json.dumps(obj))


__all__ = ["coco_results", "detect_batch", "input_transform", "predict", "trained_memory_format", "write_json"]
