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
from ..data.loader import DetectionDataset, IterationBatchSampler, make_loader
from ..data.transforms import train_transform
from ..models import build_criterion, build_model
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
from .distributed import World, init_distributed, world_from_env
from .hooks import Interrupted, MetricsWriter, PeriodicCheckpointer, ProgressReporter, StopOnSignal
from .trainer import Trainer, TrainingDiverged

log = logging.getLogger(__name__)

METRICS = "metrics.csv"  # complete training log, written at the end (a pipeline output)
RUNNING_METRICS = "metrics.running.csv"  # the log as it grows; survives an interruption, unlike outputs


def prior_family(kind: str) -> str:
    """Which recipe's prior sizes a dataset uses: 'coco' for COCO-like data, else 'voc'."""
    return "coco" if kind.endswith("coco") else "voc"


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
    """Everything a checkpoint holds, built fresh from the config."""

    data: DetectionSet
    model: torch.nn.Module
    criterion: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool


def build_training(config: TrainConfig, device: torch.device) -> TrainingState:
    data = load_dataset(config.dataset.kind, Path(config.dataset.root), config.dataset.split)
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        data.num_classes + 1,
        config.width,
        prior_family(config.dataset.kind),
        config.pretrained_backbone,
        config.batch_norm,
    ).to(device)
    criterion = build_criterion(
        config.model, config.weighting, config.variant, alpha=config.alpha, beta=config.beta, apply_to=config.apply_to
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(config, it))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return TrainingState(data, model, criterion, optimizer, scheduler, scaler, use_amp)


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
    state.scheduler.load_state_dict(saved["scheduler"])
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
            "scheduler": state.scheduler.state_dict(),
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

    state = build_training(config, device)
    checkpoint_path = out / CHECKPOINT
    start, history = resume(state, config, checkpoint_path)
    dataset = DetectionDataset(state.data, train_transform(state.model.layout.image_size), train=True, seed=config.seed)
    sampler = IterationBatchSampler(len(dataset), config.batch_size, config.seed, config.max_iter, start)
    loader = make_loader(
        dataset, _RankSlice(sampler, world.rank, config.batch_size // world.size), num_workers=config.num_workers
    )
    forward = (
        DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
        if world.size > 1
        else state.model
    )
    trainer = Trainer(
        state.model,
        state.criterion,
        state.optimizer,
        state.scheduler,
        state.scaler,
        loader,
        device,
        start,
        config.max_iter,
        forward=forward,
        autocast=state.use_amp,
        clip_grad_norm=config.clip_grad_norm,
    )

    def save(iteration: int, reason: str) -> None:
        if world.is_main:
            save_checkpoint(state, config, checkpoint_path, iteration, history, reason)

    hooks = [StopOnSignal(save), PeriodicCheckpointer(save, config.checkpoint_every)]
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
