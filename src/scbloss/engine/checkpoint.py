"""Checkpoint files and a run folder's checkpoint lifecycle: resume, compare the config, save, finish.

A checkpoint holds everything needed to resume a run bit for bit; the final model file holds the weights and a
:class:`ModelMeta`, written and read here only. Every file is read with ``torch.load(weights_only=True)``: a
checkpoint holds tensors, numbers, text and containers only (random-number states are stored as tensors and
tuples), so loading one from someone else runs no code.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ..atomic import atomic_path, remove_stale_temporaries, write_text
from ..paths import CHECKPOINT, FINAL_MODEL, METRICS, RESOLVED_CONFIG, RUNNING_METRICS
from .config import TrainConfig, default_of, result_keys

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint or model file that is missing, unreadable or of the wrong kind; the message names it."""


class ConfigChanged(ValueError):
    """A run resumed, or found finished, with a config that changes what it computes."""


@dataclass
class ModelMeta:
    """What a final model file says about its weights: how to rebuild the network and read its outputs."""

    model: str
    num_classes: int  # the background included
    width: float = 1.0
    batch_norm: bool = False
    priors: str = "voc"  # the prior family of its layout
    recipe: str = "original"  # scbloss.recipes: how its priors were made and how it is tested
    class_names: list[str] = field(default_factory=list)
    category_ids: list[int] | None = None  # COCO-layout data: the category id of each class
    dataset_kind: str = ""
    normalization: str = "imagenet"  # a key of scbloss.data.transforms.NORMALIZATIONS
    channels_last: bool = False
    iterations: int = 0
    config: dict | None = None  # the training config, every default filled in
    config_changes: list = field(default_factory=list)  # harmless changes at resumption, {"iteration", "changed"}

    @classmethod
    def from_dict(cls, values: dict, path) -> ModelMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in names})
        except TypeError as error:
            raise CheckpointError(f"{path}: its model metadata is incomplete ({error})") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over ``path``: a failed write (a full
    disk) leaves the previous file as it was and is one line naming the file and the space it needed."""
    try:
        with atomic_path(path, fsync=True) as temporary:
            torch.save(obj, temporary)
    except (OSError, RuntimeError) as error:  # torch reports a full disk as "[enforce fail at ...] unexpected pos"
        path = Path(path)
        reason = os.strerror(error.errno) if getattr(error, "errno", None) else str(error).splitlines()[0]
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        raise CheckpointError(
            f"{path}: could not be written ({reason}): about {_nbytes(obj) / 2**20:.0f} MiB needed, "
            f"{free / 2**20:.0f} MiB free on its filesystem; the file it replaces, if any, is intact"
        ) from None


def _nbytes(obj) -> int:
    """The tensor bytes inside a (nested) checkpoint object: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(value) for value in obj)
    return 0


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
    meta = ModelMeta(
        model="ssd300",
        num_classes=TORCHVISION_COCO_CLASSES,
        priors="coco",
        class_names=names[1:],
        category_ids=list(range(1, TORCHVISION_COCO_CLASSES)),
        dataset_kind="coco",
        normalization="caffe",
    )
    return model.to(device).eval(), meta


def load_trained(path: Path, device: torch.device | str = "cpu"):
    """The model and its :class:`ModelMeta` stored by ``scbloss train`` in ``model_final.pt``, in eval mode on
    ``device`` (``torchvision_coco`` gives torchvision's published COCO SSD300)."""
    from ..models import build_model

    if str(path) == TORCHVISION_COCO:
        return load_torchvision_coco(device)
    state = load_checkpoint(path)
    if "meta" not in state:
        kind = "a resumable training checkpoint" if "optimizer" in state else "not a file written by 'scbloss train'"
        raise CheckpointError(f"{path}: {kind}, not a final model file ({FINAL_MODEL}); finish the run first")
    meta = ModelMeta.from_dict(state["meta"], path)
    model = build_model(
        meta.model, meta.num_classes, meta.width, meta.priors, batch_norm=meta.batch_norm, recipe=meta.recipe
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # torch lists every key and shape: pages for a whole detector
        first = str(error).splitlines()[0].rstrip(":")
        raise CheckpointError(
            f"{path}: its weights are not those of the {meta.model} its metadata names (width {meta.width}, "
            f"{meta.num_classes} classes{', BatchNorm' if meta.batch_norm else ''}): {first}; "
            f"{_describe_weights(state['model'])}"
        ) from None
    return model.to(device).eval(), meta


def _describe_weights(weights: dict) -> str:
    """What a state dict holds, in a few words: its tensor count and its first and last keys."""
    names = list(weights)
    return f"the file holds {len(names)} tensors, from {names[0]!r} to {names[-1]!r}" if names else "it holds none"


def compare_configs(saved: dict, current: TrainConfig, where: Path) -> dict[str, tuple]:
    """The settings that changed between the run in ``where`` and ``current``: an error for any key that changes
    the result; the others (log_every, num_workers, checkpoint_every) are returned as {key: (old, new)}."""
    now = current.to_dict()
    # a key the saved config lacks was added since; the run trained with its default
    defaults = {f.name: default_of(f) for f in dataclasses.fields(TrainConfig)}
    saved = {**{key: defaults[key] for key in now if key not in saved and key in defaults}, **saved}
    changed = {key: (saved.get(key), now[key]) for key in now if saved.get(key) != now[key]}
    breaking = {key: values for key, values in changed.items() if key in result_keys()}
    if breaking:
        listing = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in breaking.items())
        raise ConfigChanged(
            f"{where} was trained with other values of {', '.join(breaking)} ({listing}). Either put the values it "
            "was started with back into the config, or train into a new run folder (--out)."
        )
    return {key: values for key, values in changed.items() if key not in breaking}


class RunFolder:
    """The checkpoint lifecycle of one run folder: whether it is finished, resuming, saving, finishing.

    ``state`` arguments are what a checkpoint holds: an object with ``model``, ``optimizer`` and ``scaler``.
    ``history`` lists the harmless setting changes of every resumption ({"iteration", "changed"}).
    """

    def __init__(self, out: Path, config: TrainConfig) -> None:
        self.out, self.config = Path(out), config
        self.checkpoint, self.final = self.out / CHECKPOINT, self.out / FINAL_MODEL
        self.running_metrics = self.out / RUNNING_METRICS
        self.history: list = []
        self.saved_iteration: int | None = None  # of the checkpoint on disk

    def create(self) -> None:
        """Make the folder; remove what writers killed mid-write left there."""
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(self.out):
            log.info("removed %s, left by a process killed while writing it", stale)

    def finished(self) -> bool:
        """Whether the run has its final model; one trained with a config that changes the result is an error."""
        if not self.final.exists():
            return False
        meta = load_checkpoint(self.final).get("meta", {})
        if "config" in meta:
            compare_configs(meta["config"], self.config, self.final)
        return True

    def resume(self, state) -> int:
        """Load the checkpoint into ``state`` if there is one; the iteration to continue from."""
        if not self.checkpoint.exists():
            return 0
        try:
            saved = load_checkpoint(self.checkpoint)
        except CheckpointError as error:
            raise CheckpointError(f"{error}; delete it to start the run over") from None
        if "optimizer" not in saved:
            kind = f"a final model file (as {FINAL_MODEL})" if "meta" in saved else "not a training checkpoint"
            raise CheckpointError(f"{self.checkpoint}: {kind}, not a resumable checkpoint; move it away to start over")
        self.history = list(saved.get("config_changes", []))
        changed = compare_configs(saved["config"], self.config, self.checkpoint)
        if changed:
            self.history.append({"iteration": saved["iteration"], "changed": {k: list(v) for k, v in changed.items()}})
            log.info(
                "resuming with changed settings: %s",
                ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()),
            )
        try:
            state.model.load_state_dict(saved["model"])
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(f"{self.checkpoint}: its weights do not fit this model ({first})") from None
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scaler.load_state_dict(saved["scaler"])
        restore_rng_states(saved["rng"])
        reason = saved.get("saved_on", "unknown")
        log.info("resumed from iteration %d (%s, saved on %s)", saved["iteration"], self.checkpoint, reason)
        self.saved_iteration = saved["iteration"]
        return saved["iteration"]

    def save(self, state, iteration: int, reason: str) -> None:
        """Write the resumable state after ``iteration``; ``reason`` ("SIGTERM", "every 2000 iterations", ...) is
        what a resumed run's log says."""
        atomic_save(
            {
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scaler": state.scaler.state_dict(),
                "rng": rng_states(),
                "iteration": iteration,
                "config": self.config.to_dict(),
                "config_changes": self.history,
                "saved_on": reason,
            },
            self.checkpoint,
        )
        self.saved_iteration = iteration

    def salvage(self, state, iteration: int) -> str:
        """After a failed final save: a resumable checkpoint of ``iteration`` if it can be written, and what it
        means for the run, as a sentence."""
        try:
            self.save(state, iteration, "a failed final save")
        except CheckpointError as error:
            if self.saved_iteration is None:
                return f"No checkpoint either ({error}): all {iteration} iterations are lost."
            return (
                f"No new checkpoint either ({error}): {self.checkpoint} keeps iteration {self.saved_iteration}; "
                f"iterations {self.saved_iteration + 1}-{iteration} are lost."
            )
        return f"{self.checkpoint} holds iteration {iteration}: free space and run the same command to finish."

    def finish(self, state, meta: ModelMeta) -> Path:
        """Write the resolved config, the complete metrics log and the final model; remove the resumable state. A
        final model that cannot be written leaves a checkpoint of the last iteration instead, where one fits."""
        meta = dataclasses.replace(meta, config=self.config.to_dict(), config_changes=self.history)
        write_text(self.out / RESOLVED_CONFIG, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        with atomic_path(self.out / METRICS) as temporary:
            shutil.copyfile(self.running_metrics, temporary)
        try:
            atomic_save({"model": state.model.state_dict(), "meta": meta.to_dict()}, self.final)
        except CheckpointError as error:
            raise CheckpointError(f"{error}. {self.salvage(state, meta.iterations)}") from None
        self.checkpoint.unlink(missing_ok=True)
        self.running_metrics.unlink()
        return self.final


__all__ = [
    "CheckpointError",
    "ConfigChanged",
    "ModelMeta",
    "RunFolder",
    "TORCHVISION_COCO",
    "atomic_save",
    "compare_configs",
    "load_checkpoint",
    "load_torchvision_coco",
    "load_trained",
    "restore_rng_states",
    "rng_states",
]
