"""`scbloss train`: config in, trained detector out; resumable after SIGTERM/SIGUSR1 or a crash."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..atomic import atomic_path, write_text
from ..data import load_dataset
from ..data.loader import DetectionDataset, IterationBatchSampler, make_loader
from ..data.transforms import train_transform
from ..models import build_criterion, build_model
from .checkpoint import atomic_save, load_checkpoint, restore_rng_states, rng_states
from .config import TrainConfig
from .distributed import World, init_distributed, world_from_env

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # resumable state, rewritten as training goes; not a pipeline output
FINAL = "model_final.pt"  # weights + metadata, written once at the end
METRICS = "metrics.csv"  # complete training log, written at the end (a pipeline output)
RUNNING_METRICS = "metrics.running.csv"  # the log as it grows; survives an interruption, unlike outputs
METRIC_FIELDS = ["iteration", "lr", "loss_cls", "loss_loc", "num_pos", "images_per_s"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """SIGTERM or SIGUSR1 arrived; a checkpoint was written."""

    def __init__(self, signum: int, iteration: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint written")
        self.signum, self.iteration = signum, iteration


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


class _StopFlag:
    """Turns SIGTERM/SIGUSR1 into a flag the loop checks after each iteration (never mid-step)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "_StopFlag":
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _rewrite_metrics(path: Path, up_to: int) -> None:
    """Keep the metric rows up to the resumed iteration: later ones will be recomputed."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["iteration"]) <= up_to]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(config: TrainConfig, out: Path, world: World | None = None) -> Path:
    """Train to ``config.max_iter`` in ``out``; resume from ``out/checkpoint.pt`` if it exists. Returns the final file."""
    out = Path(out)
    final = out / FINAL
    if final.exists():
        log.info("%s exists: training already finished", final)
        return final
    world = world or world_from_env()
    device = init_distributed(world)
    out.mkdir(parents=True, exist_ok=True)
    where = {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    print(f"training {config.model} on {device} (rank {world.rank} of {world.size}"
          + "".join(f", {k}={v}" for k, v in where.items()) + ")", flush=True)

    data = load_dataset(config.dataset.kind, Path(config.dataset.root), config.dataset.split)
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.num_classes + 1, config.width, prior_family(config.dataset.kind),
                        config.pretrained_backbone, config.batch_norm).to(device)
    criterion = build_criterion(config.model, config.weighting, config.variant, alpha=config.alpha, beta=config.beta,
                                apply_to=config.apply_to)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(config, it))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start = 0
    checkpoint_path = out / CHECKPOINT
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"])
        start = state["iteration"]
        print(f"resumed from iteration {start} ({checkpoint_path})", flush=True)
    if world.is_main:
        _rewrite_metrics(out / RUNNING_METRICS, start)

    if config.batch_size % world.size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world.size} processes")
    dataset = DetectionDataset(data, train_transform(model.layout.image_size), train=True, seed=config.seed)
    sampler = IterationBatchSampler(len(dataset), config.batch_size, config.seed, config.max_iter, start)
    per_rank = config.batch_size // world.size
    loader = make_loader(dataset, _RankSlice(sampler, world.rank, per_rank), num_workers=config.num_workers)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.size > 1 else model

    def save(iteration: int) -> None:
        if world.is_main:
            atomic_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_states(), "iteration": iteration, "config": config.to_dict(),
            }, checkpoint_path)

    model.train()
    iteration = start
    metrics_file = open(out / RUNNING_METRICS, "a", newline="") if world.is_main else None
    writer = csv.DictWriter(metrics_file, fieldnames=METRIC_FIELDS) if metrics_file else None
    if writer and metrics_file.tell() == 0:
        writer.writeheader()
    bar = tqdm(total=config.max_iter, initial=start, desc="train", unit="it", file=sys.stderr,
               disable=not world.is_main, mininterval=10, dynamic_ncols=True)
    tick, seen = time.perf_counter(), 0
    try:
        with _StopFlag() as stop:
            for images, targets in loader:
                images = images.to(device, non_blocking=True)
                targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
                with torch.autocast(device.type, enabled=use_amp):
                    outputs = trained(images)
                losses = criterion(outputs, model, targets)
                loss = losses["loss_cls"] + losses["loss_loc"]
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"non-finite loss at iteration {iteration + 1} (loss_cls={losses['loss_cls'].item()}, "
                        f"loss_loc={losses['loss_loc'].item()}); the last good checkpoint is {checkpoint_path} "
                        f"({'absent' if not checkpoint_path.exists() else 'kept'}). Lower lr or raise warmup_iters."
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.clip_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                iteration += 1
                seen += len(images) * world.size
                bar.update(1)
                if writer and (iteration % config.log_every == 0 or iteration == config.max_iter):
                    elapsed = time.perf_counter() - tick
                    writer.writerow({
                        "iteration": iteration, "lr": optimizer.param_groups[0]["lr"],
                        "loss_cls": f"{losses['loss_cls'].item():.6f}", "loss_loc": f"{losses['loss_loc'].item():.6f}",
                        "num_pos": int(losses["num_pos"]), "images_per_s": f"{seen / max(elapsed, 1e-9):.2f}",
                    })
                    metrics_file.flush()
                    print(f"iteration {iteration}/{config.max_iter} loss_cls {losses['loss_cls'].item():.4f} "
                          f"loss_loc {losses['loss_loc'].item():.4f} lr {optimizer.param_groups[0]['lr']:.2e}",
                          flush=True)
                    tick, seen = time.perf_counter(), 0
                if stop.signum is not None:
                    save(iteration)
                    raise Interrupted(stop.signum, iteration)
                if iteration % config.checkpoint_every == 0 and iteration < config.max_iter:
                    save(iteration)
    finally:
        bar.close()
        if metrics_file:
            metrics_file.close()

    if world.is_main:
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        meta = {
            "model": config.model, "width": config.width, "batch_norm": config.batch_norm,
            "num_classes": data.num_classes + 1,
            "priors": prior_family(config.dataset.kind), "class_names": data.class_names,
            "category_ids": data.category_ids, "dataset_kind": data.kind, "iterations": iteration,
        }
        with atomic_path(out / METRICS) as temporary:
            shutil.copyfile(out / RUNNING_METRICS, temporary)
        atomic_save({"model": model.state_dict(), "meta": meta}, final)
        checkpoint_path.unlink(missing_ok=True)
        (out / RUNNING_METRICS).unlink()
    return final


class _RankSlice(torch.utils.data.Sampler):
    """This process's share of each global batch, so every process sees different images of the same step."""

    def __init__(self, batches: IterationBatchSampler, rank: int, per_rank: int) -> None:
        self.batches, self.rank, self.per_rank = batches, rank, per_rank

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]


def load_trained(path: Path, device: torch.device | str = "cpu"):
    """The model and metadata stored by :func:`train` in ``model_final.pt``."""
    state = load_checkpoint(Path(path))
    if "meta" not in state:
        raise RuntimeError(f"{path}: not a final model file written by 'scbloss train'")
    meta = state["meta"]
    model = build_model(meta["model"], meta["num_classes"], meta["width"], meta["priors"],
                        batch_norm=meta.get("batch_norm", False))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), meta


__all__ = ["CHECKPOINT", "FINAL", "METRICS", "RUNNING_METRICS", "Interrupted", "TrainingDiverged", "load_trained", "lr_factor", "train"]
