"""`scbloss train`: config in, trained detector out; resumable after SIGTERM/SIGUSR1 or a crash."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from ..atomic import atomic_path, write_text
from ..data import DetectionSet, load_dataset
from ..data.device_augment import augment_batch
from ..data.loader import DetectionDataset, EncodedDetectionDataset, IterationBatchSampler, make_loader
from ..data.transforms import normalization, train_transform
from ..detectors.backbones import backbone_weights
from ..models import build_criterion, build_model
from ..models.torchvision_ssd import load_torchvision_detector
from .checkpoint import (
    CHECKPOINT,
    FINAL,
    CheckpointError,
    atomic_save,
    load_checkpoint,
    restore_rng_states,
    rng_states,
)
from .config import TrainConfig, result_keys
from .distributed import World, any_rank, global_normalizer, global_terms, init_distributed, world_from_env
from .hooks import Interrupted, MetricsWriter, PeriodicCheckpointer, ProgressReporter, StopOnSignal
from .precision import Precision, configure_device
from .precision import resolve as resolve_precision
from .trainer import Trainer, TrainingDiverged

log = logging.getLogger(__name__)

METRICS = "metrics.csv"  # complete training log, written at the end (a pipeline output)
RUNNING_METRICS = "metrics.running.csv"  # the log as it grows; survives an interruption, unlike outputs


def prior_family(kind: str) -> str:
    """Which recipe's prior sizes a dataset uses: 'coco' for COCO-like data, else 'voc'."""
    return "coco" if "coco" in kind else "voc"


def lr_factor(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up from ``warmup_factor``, then multiplied by ``gamma`` at each of ``lr_steps``."""
    steps_passed = sum(iteration >= step for step in config.lr_steps)
    factor = config.gamma**steps_passed
    if iteration < config.warmup_iters:
        progress = iteration / config.warmup_iters
        factor *= config.warmup_factor + (1 - config.warmup_factor) * progress
    return factor


@dataclass
class TrainingState:
    """Everything a checkpoint holds, built fresh from the config, and how the device computes."""

    data: DetectionSet
    model: torch.nn.Module
    criterion: object
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision


def build_training(config: TrainConfig, device: torch.device, world: World | None = None) -> TrainingState:
    data = load_dataset(
        config.dataset.kind,
        Path(config.dataset.root),
        config.dataset.split,
        classes=config.dataset.classes,
        annotations=config.dataset.annotations,
    )
    torch.manual_seed(config.seed)
    precision = resolve_precision(config.precision, config.compile, device)
    configure_device(device)
    model = build_model(
        config.model,
        data.num_classes + 1,
        config.width,
        prior_family(config.dataset.kind),
        config.pretrained_backbone,
        config.batch_norm,
        config.backbone_file,
        config.fc_weights,
    )
    if config.pretrained is not None:
        loaded = load_torchvision_detector(model, config.pretrained, data.category_ids if data.kind == "coco" else None)
        print(f"started from {config.pretrained}: {loaded}", flush=True)
    model = model.to(device, memory_format=precision.memory_format)
    distributed = {}
    if world is not None and world.size > 1:
        distributed["normalizer"] = global_normalizer  # the global batch's positives, as one process would count
        if device.type == "cuda":  # batch statistics over the global batch; SyncBatchNorm needs a GPU
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = build_criterion(
        config.model,
        config.weighting,
        config.variant,
        alpha=config.alpha,
        beta=config.beta,
        apply_to=config.apply_to,
        **distributed,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scale_loss)
    return TrainingState(data, model, criterion, optimizer, scaler, precision)


def normalization_name(config: TrainConfig) -> str:
    """The input normalisation of the weights a run starts from (ImageNet's when it starts from scratch)."""
    if config.pretrained is not None:
        return "caffe"  # torchvision's SSD300: 0-255 pixels minus the mean pixel
    if config.pretrained_backbone is not None:
        return backbone_weights(config.pretrained_backbone).normalization
    return "imagenet"


def batch_preparer(config: TrainConfig, state: TrainingState, device: torch.device, augment_on_device: bool):
    """What turns a loader batch into (images, targets) on the device: a copy, or decoding and augmenting there."""
    size = state.model.layout.image_size
    memory_format = state.precision.memory_format
    normalize = normalization(normalization_name(config))

    def targets_to_device(targets):
        return [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]

    if augment_on_device:
        return lambda batch: (
            augment_batch(batch[0], size, device, memory_format, normalize),
            targets_to_device(batch[1]),
        )
    return lambda batch: (
        batch[0].to(device, non_blocking=True, memory_format=memory_format),
        targets_to_device(batch[1]),
    )


class ConfigChanged(ValueError):
    """A run resumed, or found finished, with a config that changes what it computes."""


def compare_configs(saved: dict, current: TrainConfig, where: Path) -> dict[str, tuple]:
    """The settings that changed between the run in ``where`` and ``current``: an error for any key that changes
    the result; the others (log_every, num_workers, checkpoint_every) are returned as {key: (old, new)}."""
    now = current.to_dict()
    changed = {key: (saved.get(key), now[key]) for key in now if saved.get(key) != now[key]}
    breaking = {key: values for key, values in changed.items() if key in result_keys()}
    if breaking:
        listing = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in breaking.items())
        raise ConfigChanged(
            f"{where} was trained with other values of {', '.join(breaking)} ({listing}). Either put the values it "
            "was started with back into the config, or train into a new run folder (--out)."
        )
    return {key: values for key, values in changed.items() if key not in breaking}


def resume(state: TrainingState, config: TrainConfig, checkpoint_path: Path) -> tuple[int, list]:
    """Load the checkpoint into ``state`` if there is one. Returns the iteration to continue from and the history
    of harmless setting changes (each {"iteration", "changed"}), this resumption's included."""
    if not checkpoint_path.exists():
        return 0, []
    try:
        saved = load_checkpoint(checkpoint_path)
    except CheckpointError as error:
        raise CheckpointError(f"{error}; delete it to start the run over") from None
    if "optimizer" not in saved:
        kind = "a final model file (as model_final.pt)" if "meta" in saved else "not a training checkpoint"
        raise CheckpointError(f"{checkpoint_path}: {kind}, not a resumable checkpoint; move it away to start over")
    history = list(saved.get("config_changes", []))
    changed = compare_configs(saved["config"], config, checkpoint_path)
    if changed:
        history.append({"iteration": saved["iteration"], "changed": {k: list(v) for k, v in changed.items()}})
        print(
            "resuming with changed settings: "
            + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()),
            flush=True,
        )
    try:
        state.model.load_state_dict(saved["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{checkpoint_path}: its weights do not fit this model ({first})") from None
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scaler.load_state_dict(saved["scaler"])
    restore_rng_states(saved["rng"])
    reason = saved.get("saved_on", "unknown")
    print(f"resumed from iteration {saved['iteration']} ({checkpoint_path}, saved on {reason})", flush=True)
    return saved["iteration"], history


def save_checkpoint(
    state: TrainingState, config: TrainConfig, path: Path, iteration: int, history: list, reason: str
) -> None:
    atomic_save(
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scaler": state.scaler.state_dict(),
            "rng": rng_states(),
            "iteration": iteration,
            "config": config.to_dict(),
            "config_changes": history,
            "saved_on": reason,  # "SIGTERM", "every 2000 iterations", ...: a resumed run's log says why
        },
        path,
    )


def finish(state: TrainingState, config: TrainConfig, out: Path, iterations: int, history: list) -> Path:
    """Write the resolved config, the complete metrics log and the final model; remove the resumable state."""
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    data = state.data
    meta = {
        "model": config.model,
        "width": config.width,
        "batch_norm": config.batch_norm,
        "num_classes": data.num_classes + 1,
        "priors": prior_family(config.dataset.kind),
        "class_names": data.class_names,
        "category_ids": data.category_ids,
        "dataset_kind": data.kind,
        "iterations": iterations,
        "channels_last": state.precision.channels_last,
        "normalization": normalization_name(config),
        "config": config.to_dict(),
        "config_changes": history,
    }
    with atomic_path(out / METRICS) as temporary:
        shutil.copyfile(out / RUNNING_METRICS, temporary)
    atomic_save({"model": state.model.state_dict(), "meta": meta}, out / FINAL)
    (out / CHECKPOINT).unlink(missing_ok=True)
    (out / RUNNING_METRICS).unlink()
    return out / FINAL


def _check_finished(final: Path, config: TrainConfig) -> None:
    """A finished run is only "already finished" for the config it was trained with."""
    meta = load_checkpoint(final).get("meta", {})
    if "config" in meta:
        compare_configs(meta["config"], config, final)


class _RankSlice(torch.utils.data.Sampler):
    """This process's share of each global batch, so every process sees different images of the same step."""

    def __init__(self, batches: IterationBatchSampler, rank: int, per_rank: int) -> None:
        self.batches, self.rank, self.per_rank = batches, rank, per_rank

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]


def train(config: TrainConfig, out: Path, world: World | None = None) -> Path:
    """Train to ``config.max_iter`` in ``out``, resuming from ``out/checkpoint.pt`` if it exists; returns the final
    model file."""
    out = Path(out)
    if (out / FINAL).exists():
        _check_finished(out / FINAL, config)
        log.info("%s exists: training already finished", out / FINAL)
        return out / FINAL
    world = world or world_from_env()
    if config.batch_size % world.size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world.size} processes")
    device = init_distributed(world)
    out.mkdir(parents=True, exist_ok=True)
    where = {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    print(
        f"training {config.model} on {device} (rank {world.rank} of {world.size}"
        + "".join(f", {k}={v}" for k, v in where.items())
        + ")",
        flush=True,
    )

    state = build_training(config, device, world)
    checkpoint_path = out / CHECKPOINT
    start, history = resume(state, config, checkpoint_path)
    size = state.model.layout.image_size
    on_device = config.augment_on == "gpu" or (config.augment_on == "auto" and device.type == "cuda")
    dataset = (
        EncodedDetectionDataset(state.data, size, seed=config.seed)
        if on_device
        else DetectionDataset(
            state.data, train_transform(size, *normalization(normalization_name(config))), train=True, seed=config.seed
        )
    )
    sampler = IterationBatchSampler(len(dataset), config.batch_size, config.seed, config.max_iter, start)
    loader = make_loader(
        dataset, _RankSlice(sampler, world.rank, config.batch_size // world.size), num_workers=config.num_workers
    )
    forward = (
        DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
        if world.size > 1
        else state.model
    )
    if state.precision.compile:  # the network only: the loss, with its per-image object counts, stays eager
        forward = torch.compile(forward)
    print(
        f"precision {state.precision.name}, channels_last {state.precision.channels_last}, compiled "
        f"{state.precision.compile}, augmentation on {'the device' if on_device else 'the CPU workers'}",
        flush=True,
    )
    trainer = Trainer(
        state.model,
        state.criterion,
        state.optimizer,
        lambda iteration: config.lr * lr_factor(config, iteration),
        state.scaler,
        loader,
        batch_preparer(config, state, device, on_device),
        start,
        config.max_iter,
        forward=forward,
        autocast_dtype=state.precision.autocast_dtype,
        clip_grad_norm=config.clip_grad_norm,
        global_terms=global_terms if world.size > 1 else None,
    )

    def save(iteration: int, reason: str) -> None:
        if world.is_main:
            save_checkpoint(state, config, checkpoint_path, iteration, history, reason)

    agree = (lambda flag: any_rank(flag, device)) if world.size > 1 else None
    barrier = torch.distributed.barrier if world.size > 1 else None
    hooks = [StopOnSignal(save, agree, barrier), PeriodicCheckpointer(save, config.checkpoint_every)]
    if world.is_main:
        hooks = [
            MetricsWriter(out / RUNNING_METRICS, config.log_every, start, world.size),
            ProgressReporter(config.log_every),
        ] + hooks
    trainer.register_hooks(hooks)
    try:
        trainer.train()
    except TrainingDiverged as error:
        kept = "kept" if checkpoint_path.exists() else "absent"
        raise TrainingDiverged(
            f"{error}; the last good checkpoint is {checkpoint_path} ({kept}). Lower lr or raise warmup_iters."
        ) from None
    return finish(state, config, out, trainer.iter, history) if world.is_main else out / FINAL


__all__ = [
    "METRICS",
    "RUNNING_METRICS",
    "ConfigChanged",
    "Interrupted",
    "TrainingDiverged",
    "compare_configs",
    "lr_factor",
    "prior_family",
    "train",
]
