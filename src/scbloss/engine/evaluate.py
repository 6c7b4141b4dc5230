"""`scbloss evaluate`: a trained detector on a dataset split -> detections and every metric the paper reports."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import zipfile
from pathlib import Path

import torch

from .. import detectors
from ..atomic import atomic_path
from ..conventions import RECALL_THRESHOLDS
from ..data import load_dataset
from ..data.transforms import normalization
from ..paths import DETECTIONS, EVAL_METRICS, RECALL, test_dev_zip_name
from ..recipes import recipe
from .checkpoint import load_trained
from .coco_eval import coco_stats
from .predict import predict, trained_memory_format, write_json
from .recall import size_recall
from .voc_eval import voc_ap_per_class

log = logging.getLogger(__name__)


def write_test_dev_submission(detections: list[dict], out: Path, name: str) -> Path:
    """The zip the COCO evaluation server takes: detections_test-dev2017_<name>_results.json inside."""
    target = Path(out) / test_dev_zip_name(name)
    inner = target.name.removesuffix(".zip") + ".json"
    with atomic_path(target) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(inner, json.dumps(detections))
    return target


def evaluate(
    checkpoint: Path,
    kind: str,
    root: Path,
    split: str,
    out: Path,
    name: str = "scbloss",
    coco_backend: str = "pycocotools",
    thresholds: tuple[float, ...] = RECALL_THRESHOLDS,
    eleven_point: bool = True,
    batch_size: int = 16,
    num_workers: int = 2,
    device: str | None = None,
    classes: list[str] | None = None,
    annotations: str | None = None,
) -> dict:
    """Evaluate and write ``out/metrics.json`` (plus detections.json and recall.csv); returns the metrics.

    ``classes`` and ``annotations`` describe a voc_folder or coco_json dataset (see load_dataset); a voc_folder's
    classes default to the model's, in its label order."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_trained(checkpoint, device)
    if kind == "voc_folder" and not classes:
        classes = meta.class_names
    data = load_dataset(kind, root, split, classes=classes, annotations=annotations)
    model_ids = meta.category_ids or []
    if data.category_ids and model_ids and len(model_ids) != len(data.category_ids):
        missing = sorted(set(data.category_ids) - set(model_ids))
        if missing:  # a model with more classes (torchvision's 91) scores the dataset's categories among them
            raise ValueError(f"{checkpoint}: has no output for category ids {missing[:5]} of {kind}/{split}")
    elif data.class_names != meta.class_names:
        raise ValueError(
            f"{checkpoint}: trained on classes {meta.class_names}, but {kind}/{split} has {data.class_names}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    memory_format = trained_memory_format(meta.channels_last, device)
    settings = recipe(meta.recipe).test_settings(detectors.get(meta.model).test)
    # The recall tables count detections down to their lowest threshold; filtering those at the recipe's score
    # floor equals post-processing at it (NMS never lets a lower score suppress a higher one)
    lowest = min(settings.score_threshold, *thresholds)
    detections = predict(
        model,
        data,
        batch_size,
        num_workers,
        score_threshold=lowest,
        pre_nms_top_k=settings.pre_nms_top_k,
        per_image=settings.per_image,
        device=device,
        memory_format=memory_format,
        normalize=normalization(meta.normalization),
        category_of=model_ids or None,
    )
    metrics: dict = {
        "checkpoint": str(checkpoint),
        "dataset": {"kind": kind, "root": str(root), "split": split},
        "images": len(data.records),
        "detections": len(detections),
        "recipe": meta.recipe,
        "test": dataclasses.asdict(settings),
    }
    scored = detections  # what mAP, AP and the test-dev server count
    if settings.score_threshold > lowest:
        scored = [d for d in detections if d["score"] > settings.score_threshold]
    if split == "test-dev":
        zipped = write_test_dev_submission(scored, out, name)
        metrics["test_dev"] = (
            f"{zipped.name}: upload it to the COCO evaluation server; test-dev ground truth is "
            "not public, so nothing is scored locally"
        )
        log.warning(metrics["test_dev"])
        write_json(metrics, out / EVAL_METRICS)
        return metrics
    write_json(detections, out / DETECTIONS)
    if data.kind == "voc":
        aps = voc_ap_per_class(data, scored, eleven_point=eleven_point)
        valid = [v for v in aps.values() if not math.isnan(v)]
        metrics["voc_map"] = round(100.0 * sum(valid) / len(valid), 4) if valid else float("nan")
        metrics["voc_protocol"] = "VOC2007 11-point" if eleven_point else "all-point"
        metrics["ap_per_class"] = {k: round(100.0 * v, 4) for k, v in aps.items()}
    else:
        metrics["coco"] = coco_stats(data.annotation_file, scored, coco_backend)
    recall = size_recall(data, detections, thresholds)
    recall.to_csv(out / RECALL, index=False)
    metrics["recall"] = recall.to_dict(orient="records")
    write_json(metrics, out / EVAL_METRICS)
    return metrics


__all__ = ["evaluate", "write_test_dev_submission"]
