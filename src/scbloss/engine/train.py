"""`scbloss train`: config in, trained detector out; resumable after SIGTERM/SIGUSR1 or a crash.

:func:`train` is the outline of a run; each step is a function here or a module of its own (solver, checkpoint,
trainer and hooks, precision, distributed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..data import DetectionSet, dataset_spec, load_dataset
from ..data.device_augment import augment_batch
from ..data.image_cache import ImageCache, build_cache
from ..data.loader import (
    DetectionDataset,
    EncodedDetectionDataset,
    IterationBatchSampler,
    RankSlice,
    make_loader,
    training_transform,
)
from ..data.prefetch import Prefetched
from ..data.transforms import normalization
from ..detectors.backbones import backbone_weights
from ..models import build_criterion, build_model
from ..models.torchvision_ssd import load_torchvision_detector
from ..recipes import recipe, training_augmentation
from .checkpoint import ModelMeta, RunFolder
from .config import TrainConfig
from .distributed import World, any_rank, global_normalizer, global_terms, init_distributed, world_from_env
from .hooks import MetricsWriter, PeriodicCheckpointer, ProgressReporter, StopOnSignal
from .precision import Precision, configure_device
from .precision import resolve as resolve_precision
from .solver import build_optimizer, lr_schedule
from .stages import freeze_modules, load_modules
from .tensorboard import tensorboard_hooks
from .trainer import Trainer, TrainingDiverged

log = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """Everything a checkpoint holds, built fresh from the config, and how the device computes."""

    data: DetectionSet
    model: torch.nn.Module
    criterion: object
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision


def train(config: TrainConfig, out: Path, world: World | None = None) -> Path:
    """Train to ``config.max_iter`` in ``out``, resuming from ``out/checkpoint.pt`` if it exists; returns the final
    model file."""
    run = RunFolder(out, config)
    if run.finished():
        log.info("%s exists: training already finished", run.final)
        return run.final
    world = world or world_from_env()
    device = init_distributed(world)
    run.create()
    where = "".join(f", {k}={os.environ[k]}" for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ)
    log.info("training %s on %s (rank %d of %d%s)", config.model, device, world.rank, world.size, where)
    state = build_training(config, device, world)
    start = run.resume(state)
    on_device = config.augment_on == "gpu" or (config.augment_on == "auto" and device.type == "cuda")
    cache = image_cache(config, state, world, device, on_device)
    loader = build_loader(config, state, world, start, on_device, cache)
    prepare = batch_preparer(config, state, device, on_device, cache)
    if prefetches(device):
        loader, prepare = Prefetched(loader, prepare, device, first=start), _prepared
    trainer = Trainer(
        model=state.model,
        criterion=state.criterion,
        optimizer=state.optimizer,
        lr_at=lr_schedule(config),
        scaler=state.scaler,
        loader=loader,
        prepare=prepare,
        start_iter=start,
        max_iter=config.max_iter,
        forward=forward_module(state, world, device),
        autocast_dtype=state.precision.autocast_dtype,
        clip_grad_norm=config.clip_grad_norm,
        global_terms=global_terms if world.size > 1 else None,
        accumulate=config.accumulate_grad,
    )
    log.info(
        "%s, augmentation on %s%s",
        state.precision.describe(),
        "the device" if on_device else "the CPU workers",
        ", the next batch prepared during each step" if prefetches(device) else "",
    )
    trainer.register_hooks(training_hooks(config, run, state, world, device, start))
    try:
        trainer.train()
    except TrainingDiverged as error:
        kept = "kept" if run.checkpoint.exists() else "absent"
        raise TrainingDiverged(
            f"{error}; the last good checkpoint is {run.checkpoint} ({kept}). Lower lr or raise warmup_iters."
        ) from None
    return run.finish(state, model_meta(config, state, trainer.iter)) if world.is_main else run.final


def build_training(config: TrainConfig, device: torch.device, world: World | None = None) -> TrainingState:
    """The data, the network (from its pretrained weights), its loss, the optimizer and the loss scaler."""
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
        dataset_spec(config.dataset.kind).prior_family,
        config.pretrained_backbone,
        config.batch_norm,
        config.backbone_file,
        config.fc_weights,
        config.recipe,
    )
    if config.pretrained is not None:
        loaded = load_torchvision_detector(model, config.pretrained, data.category_ids if data.kind == "coco" else None)
        log.info("started from %s: %s", config.pretrained, loaded)
    if config.init_from is not None:
        load_modules(model, config.init_from, config.init_modules)
    if config.freeze:
        freeze_modules(model, config.freeze)
    model = model.to(device, memory_format=precision.memory_format)
    loss_options = {}
    images_per_normalizer = recipe(config.recipe).images_per_normalizer
    if images_per_normalizer:  # each group normalized alone: DDP's gradient average then averages the groups
        loss_options["images_per_normalizer"] = images_per_normalizer
    if world is not None and world.size > 1:
        if not images_per_normalizer:  # the global batch's positives, as one process would count
            loss_options["normalizer"] = global_normalizer
        if device.type == "cuda":  # batch statistics over the global batch; SyncBatchNorm needs a GPU
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = build_criterion(
        config.model,
        config.weighting,
        config.variant,
        alpha=config.alpha,
        beta=config.beta,
        apply_to=config.apply_to,
        **loss_options,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scale_loss)
    return TrainingState(data, model, criterion, build_optimizer(model, config), scaler, precision)


def normalization_name(config: TrainConfig) -> str:
    """The input normalisation of the weights a run starts from (its recipe's when it starts from scratch)."""
    if config.pretrained is not None:
        return "caffe"  # torchvision's SSD300: 0-255 pixels minus the mean pixel
    if config.pretrained_backbone is not None:
        return backbone_weights(config.pretrained_backbone).normalization
    return recipe(config.recipe).normalization


def image_cache(
    config: TrainConfig, state: TrainingState, world: World, device: torch.device, on_device: bool
) -> ImageCache | None:
    """The decoded training images the ``cache`` key asks for (data/image_cache.py), or None."""
    name = f"{config.dataset.kind} {config.dataset.root} ({config.dataset.split})"
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))  # ranks on this node share its memory
    return build_cache(config.cache, state.data, name, device, on_device, config.num_workers, processes)


def build_loader(
    config: TrainConfig,
    state: TrainingState,
    world: World,
    start: int,
    on_device: bool,
    cache: ImageCache | None = None,
):
    """This process's share of the batches of iterations ``start``..``max_iter``: encoded images (or, with
    ``cache``, their indices) and drawn augmentation parameters when the device augments, augmented images
    otherwise."""
    size = state.model.layout.image_size
    augmentation = training_augmentation(config.recipe, config.model, dataset_spec(config.dataset.kind).prior_family)
    if on_device:
        dataset = EncodedDetectionDataset(
            state.data, size, seed=config.seed, augmentation=augmentation, cached=cache is not None
        )
    else:
        transform = training_transform(augmentation, size, normalization(normalization_name(config)))
        dataset = DetectionDataset(
            state.data, transform, train=True, seed=config.seed, augmentation=augmentation, cache=cache
        )
    step_images = config.batch_size * config.accumulate_grad  # the trainer splits a step's batch into its passes
    batches = IterationBatchSampler(len(dataset), step_images, config.seed, config.max_iter, start)
    return make_loader(dataset, RankSlice(batches, world.rank, world.size), num_workers=config.num_workers)


def batch_preparer(
    config: TrainConfig,
    state: TrainingState,
    device: torch.device,
    augment_on_device: bool,
    cache: ImageCache | None = None,
):
    """What turns a loader batch into (images, targets) on the device: a copy, or decoding (or taking from
    ``cache``) and augmenting there."""
    size = state.model.layout.image_size
    memory_format = state.precision.memory_format
    normalize = normalization(normalization_name(config))

    def targets_to_device(targets):
        return [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]

    if augment_on_device:
        return lambda batch: (
            augment_batch(batch[0], size, device, memory_format, normalize, cache),
            targets_to_device(batch[1]),
        )
    return lambda batch: (
        batch[0].to(device, non_blocking=True, memory_format=memory_format),
        targets_to_device(batch[1]),
    )


def prefetches(device: torch.device) -> bool:
    """Whether the next batch is prepared (copied, decoded, augmented) in a thread while a step runs: on a GPU, where
    the step leaves the CPU free; on a CPU that thread would take the cores from the step."""
    return device.type == "cuda"


def _prepared(batch):
    return batch


def forward_module(state: TrainingState, world: World, device: torch.device) -> torch.nn.Module:
    """What runs the images: the network, in DistributedDataParallel under several processes, compiled if asked
    (the network only: the loss, with its per-image object counts, stays eager)."""
    forward = state.model
    if world.size > 1:
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(forward) if state.precision.compile else forward


def training_hooks(config: TrainConfig, run: RunFolder, state: TrainingState, world: World, device, start: int):
    """Stop signals and periodic checkpoints on every rank (rank 0 writes); the metrics log and progress on rank 0."""

    def save(iteration: int, reason: str) -> None:
        if world.is_main:
            run.save(state, iteration, reason)

    agree = (lambda flag: any_rank(flag, device)) if world.size > 1 else None
    barrier = torch.distributed.barrier if world.size > 1 else None
    hooks = [StopOnSignal(save, agree, barrier), PeriodicCheckpointer(save, config.checkpoint_every)]
    if not world.is_main:
        return hooks
    metrics = MetricsWriter(run.running_metrics, config.log_every, start, world.size)
    return [metrics, *tensorboard_hooks(run.out, metrics, start), ProgressReporter(config.log_every)] + hooks


def model_meta(config: TrainConfig, state: TrainingState, iterations: int) -> ModelMeta:
    """What the final model file records to rebuild the network and read its outputs."""
    return ModelMeta(
        model=config.model,
        num_classes=state.data.num_classes + 1,
        width=config.width,
        batch_norm=config.batch_norm,
        priors=dataset_spec(config.dataset.kind).prior_family,
        recipe=config.recipe,
        class_names=state.data.class_names,
        category_ids=state.data.category_ids,
        dataset_kind=state.data.kind,
        normalization=normalization_name(config),
        channels_last=state.precision.channels_last,
        iterations=iterations,
    )


__all__ = ["TrainingState", "build_training", "train"]
