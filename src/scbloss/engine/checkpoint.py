"""Checkpoint files: atomic writes, everything needed to resume a run bit for bit, and the trained model file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path

CHECKPOINT = "checkpoint.pt"  # resumable state, rewritten as training goes; not a pipeline output
FINAL = "model_final.pt"  # weights + metadata, written once at the end


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path, fsync=True) as temporary:
        torch.save(obj, temporary)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for a damaged file
        raise RuntimeError(f"{path}: unreadable checkpoint ({error}); delete it to start over") from error


def load_trained(path: Path, device: torch.device | str = "cpu"):
    """The model and metadata stored by ``scbloss train`` in ``model_final.pt``, in eval mode on ``device``."""
    from ..models import build_model

    state = load_checkpoint(Path(path))
    if "meta" not in state:
        raise RuntimeError(f"{path}: not a final model file written by 'scbloss train'")
    meta = state["meta"]
    model = build_model(
        meta["model"], meta["num_classes"], meta["width"], meta["priors"], batch_norm=meta.get("batch_norm", False)
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), meta


__all__ = ["CHECKPOINT", "FINAL", "atomic_save", "load_checkpoint", "load_trained", "restore_rng_states", "rng_states"]
