"""The files of a run folder, named once: the trainer and evaluation write them, the rules declare them.

Nothing here imports torch: the workflow reads these names when it parses.
"""

from __future__ import annotations

TRAIN_CONFIG = "train.yaml"  # the run's config as the pipeline composed it (rule run_config)
RESOLVED_CONFIG = "config.yaml"  # the typed config as training read it, every default filled in
CHECKPOINT = "checkpoint.pt"  # resumable state, rewritten as training goes; not a pipeline output
FINAL_MODEL = "model_final.pt"  # weights + metadata, written once at the end
METRICS = "metrics.csv"  # the complete training log, written at the end (a pipeline output)
RUNNING_METRICS = "metrics.running.csv"  # the log as it grows; survives an interruption, unlike outputs
EVAL_METRICS = "metrics.json"  # an evaluation's numbers, in eval/<split>/
DETECTIONS = "detections.json"  # COCO result format
RECALL = "recall.csv"


def run_file(runs_dir, run_id: str, name: str) -> str:
    """A file of a run folder under results/runs (or an imported metrics_dir: same layout)."""
    return f"{runs_dir}/{run_id}/{name}"


def eval_file(runs_dir, run_id: str, split: str, name: str = EVAL_METRICS) -> str:
    """A file of a run's evaluation on ``split``."""
    return f"{runs_dir}/{run_id}/eval/{split}/{name}"


def test_dev_zip_name(name: str) -> str:
    """The zip the COCO evaluation server takes for the results called ``name``."""
    return f"detections_test-dev2017_{name}_results.zip"


__all__ = [
    "CHECKPOINT",
    "DETECTIONS",
    "EVAL_METRICS",
    "FINAL_MODEL",
    "METRICS",
    "RECALL",
    "RESOLVED_CONFIG",
    "RUNNING_METRICS",
    "TRAIN_CONFIG",
    "eval_file",
    "run_file",
    "test_dev_zip_name",
]
