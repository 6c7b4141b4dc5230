"""Checkpoint files: atomic writes, everything needed to resume a run bit for bit, and the trained model file.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint holds tensors, numbers, text and containers
only (random-number states are stored as tensors and tuples), so loading one from someone else runs no code.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path

CHECKPOINT = "checkpoint.pt"  # resumable state, rewritten as training goes; not a pipeline output
FINAL = "model_final.pt"  # weights + metadata, written once at the end


class CheckpointError(RuntimeError):
    """A checkpoint or model file that is missing, unreadable or of the wrong kind; the message names it."""


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path, fsync=True) as temporary:
        torch.save(obj, temporary)


def rng_states() -> dict:
    """torch, numpy and Python random states in types ``weights_only`` loading accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: Path) -> dict:
    """A file written by ``scbloss train``, loaded without running any code it may hold."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "unsupported global" not in text.lower():  # not a pickle at all: garbage or a damaged file
            raise CheckpointError(f"{path}: not a readable PyTorch file ({_unpickler_reason(text)})") from error
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors, numbers and text, which loading would have to "
            f"run as code ({_unpickler_reason(text)})"
        ) from error
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable PyTorch file ({error})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a file written by 'scbloss train' (holds a {type(state).__name__})")
    return state


def _unpickler_reason(text: str) -> str:
    """The line of torch's weights-only error that says what it met (its message is a page long)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if "unsupported" in line.lower() and "weights only load failed" not in line.lower()]
    return (found or lines or ["unknown reason"])[0]


TORCHVISION_COCO = "torchvision_coco"  # names torchvision's published COCO SSD300 where a model file is expected


def load_torchvision_coco(device: torch.device | str = "cpu"):
    """torchvision's COCO-trained SSD300 as one of our models: 91 outputs indexed by COCO category id, torchvision's
    input normalisation; with metadata like a model file's."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    from ..models import build_model
    from ..models.torchvision_ssd import TORCHVISION_COCO_CLASSES, load_torchvision_detector

    model = build_model("ssd300", TORCHVISION_COCO_CLASSES, dataset="coco")
    load_torchvision_detector(model, TORCHVISION_COCO, None)
    names = SSD300_VGG16_Weights.COCO_V1.meta["categories"]
    meta = {
        "model": "ssd300",
        "width": 1.0,
        "num_classes": TORCHVISION_COCO_CLASSES,
        "priors": "coco",
        "class_names": names[1:],
        "category_ids": list(range(1, TORCHVISION_COCO_CLASSES)),
        "dataset_kind": "coco",
        "normalization": "caffe",
        "channels_last": False,
    }
    return model.to(device).eval(), meta


def load_trained(path: Path, device: torch.device | str = "cpu"):
    """The model and metadata stored by ``scbloss train`` in ``model_final.pt``, in eval mode on ``device``
    (``torchvision_coco`` gives torchvision's published COCO SSD300)."""
    from ..models import build_model

    if str(path) == TORCHVISION_COCO:
        return load_torchvision_coco(device)
    state = load_checkpoint(path)
    if "meta" not in state:
        kind = "a resumable training checkpoint" if "optimizer" in state else "not a file written by 'scbloss train'"
        raise CheckpointError(f"{path}: {kind}, not a final model file ({FINAL}); finish the run first")
    meta = state["meta"]
    model = build_model(
        meta["model"], meta["num_classes"], meta["width"], meta["priors"], batch_norm=meta.get("batch_norm", False)
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), meta


__all__ = [
    "CHECKPOINT",
    "CheckpointError",
    "FINAL",
    "TORCHVISION_COCO",
    "atomic_save",
    "load_checkpoint",
    "load_torchvision_coco",
    "load_trained",
    "restore_rng_states",
    "rng_states",
]
