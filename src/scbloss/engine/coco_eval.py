"""The 12 standard COCO box statistics, from pycocotools or (optionally) faster-coco-eval."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

from ..conventions import COCO_STATS
from ..data.coco import load_coco_api


def coco_stats(annotation_file: Path, detections: list[dict], backend: str = "pycocotools") -> dict[str, float]:
    """AP/AR at COCO's IoU thresholds and size ranges for COCO result entries, in percent."""
    if not detections:  # both libraries refuse an empty result list; no detections scores zero everywhere
        return {name: 0.0 for name in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):  # both libraries print their progress and summary tables
        if backend == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            ground_truth = load_coco_api(annotation_file)
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(detections)), "bbox")
        elif backend == "faster-coco-eval":
            try:
                from faster_coco_eval import COCO, COCOeval_faster
            except ImportError as error:
                raise RuntimeError("backend 'faster-coco-eval' needs: pip install faster-coco-eval") from error
            ground_truth = COCO(str(annotation_file))
            evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes(copy.deepcopy(detections)), iouType="bbox")
        else:
            raise ValueError(f"unknown COCO backend {backend!r}; choose pycocotools or faster-coco-eval")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: round(100.0 * float(value), 4) for name, value in zip(COCO_STATS, evaluator.stats[:12])}


__all__ = ["COCO_STATS", "coco_stats"]
