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
        DetectionDataset(
            data, eval_transform(model.layout.image_size, *(normalize or normalization("imagenet"))), train=False
        ),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    category_of = category_of or data.category_ids or list(range(1, data.num_classes + 1))
    results = []
    with batches(loader) as iterator:  # workers stopped however the loop ends
        for images, targets in tqdm(iterator, total=len(loader), desc="predict", disable=not progress, mininterval=10):
            loc, conf, priors = model.detection_inputs(model(images.to(device, memory_format=memory_format)))
            outputs = postprocess(
                loc.float(), conf.float(), priors, score_threshold, top_k=per_image, pre_nms_top_k=pre_nms_top_k
            )
            for detections, target in zip(outputs, targets):
                height, width = target["orig_size"]
                boxes = detections_from_priors_frame(model.layout, detections["boxes"].cpu())
                boxes = boxes * torch.tensor([width, height, width, height])
                if model.layout.generator == "mmdet_v1":
                    boxes = from_mmdet_v1(boxes, data.kind)
                xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
                scored = zip(xywh.tolist(), detections["scores"].tolist(), detections["labels"].tolist())
                for box, score, label in scored:
                    results.append(
                        {
                            "image_id": target["image_id"],
                            "category_id": category_of[label - 1],
                            "bbox": [round(v, 2) for v in box],
                            "score": round(score, 5),
                        }
                    )
    return results


def write_json(obj, path: Path) -> None:
    write_text(path, json.dumps(obj))


__all__ = ["predict", "write_json"]
