"""Training configuration: a YAML file of known keys with the SSD recipe's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration file with an unknown key or a bad value; the message names the file and the key."""


@dataclass
class DatasetConfig:
    kind: str = "toy_voc"  # voc, coco, toy_voc, toy_coco
    root: str = "data/toy"
    split: str = "trainval"


@dataclass
class TrainConfig:
    model: str = "ssd300"
    width: float = 1.0
    batch_norm: bool = False  # BatchNorm in the trunk: for training from scratch (toy runs), not the paper's runs
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    weighting: str = "scb"
    variant: str = ""  # refinedet320: which modules the weighting applies to, "arm" (default) or "arm_odm"
    alpha: float = 1.0
    beta: float = 3.0
    apply_to: str = "cls"
    batch_size: int = 32
    lr: float = 1e-3
    warmup_iters: int = 0
    warmup_factor: float = 1.0 / 3
    lr_steps: list[int] = field(default_factory=lambda: [80_000, 100_000])
    gamma: float = 0.1
    max_iter: int = 120_000
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float | None = None  # max gradient norm; None leaves gradients alone, as the SSD recipes do
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    num_workers: int = 4
    amp: bool = True  # used on CUDA only
    pretrained_backbone: str | None = None

    def check(self, source: str) -> TrainConfig:
        from .. import detectors
        from ..detection.weighting import WEIGHTINGS

        problems = []
        if self.model not in detectors.names():
            problems.append(f"model: {self.model!r} is not one of {', '.join(detectors.names())}")
        else:
            try:
                detectors.get(self.model).check_variant(self.variant)
            except ValueError as error:
                problems.append(f"variant: {error}")
        if self.weighting not in WEIGHTINGS:
            problems.append(f"weighting: {self.weighting!r} is not one of {', '.join(sorted(WEIGHTINGS))}")
        if self.apply_to not in ("cls", "cls+loc"):
            problems.append(f"apply_to: {self.apply_to!r} is not 'cls' or 'cls+loc'")
        for name in ("batch_size", "max_iter", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.width <= 0:
            problems.append("lr and width must be positive")
        if sorted(self.lr_steps) != list(self.lr_steps):
            problems.append(f"lr_steps: must be increasing, got {self.lr_steps}")
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: dict, source: str, prefix: str = ""):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        if name == "dataset":
            value = _build(DatasetConfig, value, source, "dataset.")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from error


def config_from_dict(values: dict, source: str = "<config>") -> TrainConfig:
    return _build(TrainConfig, values, source).check(source)


def load_config(path: Path) -> TrainConfig:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read YAML ({error})") from error
    return config_from_dict(values, str(path))


__all__ = ["ConfigError", "DatasetConfig", "TrainConfig", "config_from_dict", "load_config"]
