"""Training configuration: a YAML file of known, typed keys with the SSD recipe's defaults.

YAML reads `lr: 1e-3` as a string and `max_iter: "2"` is a string too: numbers written as text are converted,
anything else that is not of a key's type is refused, as is a value outside the key's range, with the file and the
key named. Keys marked ``affects_result=False`` may change when a run resumes; every other key must not.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration file with an unknown key or a bad value; the message names the file and the key."""


def option(
    default=dataclasses.MISSING,
    *,
    factory=None,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    choices=None,
    affects_result=True,
):
    """A config field with its range ([low, high], open ends where asked) or its allowed values."""
    metadata = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": choices,
        "affects_result": affects_result,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DatasetConfig:
    kind: str = option(choices=("voc", "coco", "toy_voc", "toy_coco", "voc_folder", "coco_json"))
    root: str = option()  # voc_folder: the folder with Annotations/...; coco_json: the split's image folder
    split: str = option("")  # empty: the training split of the kind (trainval for VOC, train for COCO)
    classes: list[str] | None = None  # voc_folder: the class names in label order (default: the annotations')
    annotations: str | None = None  # coco_json: the split's COCO JSON

    def __post_init__(self) -> None:
        if not self.split:
            self.split = "train" if "coco" in self.kind else "trainval"


@dataclass
class TrainConfig:
    dataset: DatasetConfig
    model: str = "ssd300"
    width: float = option(1.0, low=0, low_open=True, high=8)
    batch_norm: bool = False  # BatchNorm in the trunk: for training from scratch (toy runs), not the paper's runs
    weighting: str = "scb"
    variant: str = ""  # refinedet320: which modules the weighting applies to, "arm" (default) or "arm_odm"
    alpha: float = option(1.0, low=0)
    beta: float = option(3.0, low=0, low_open=True)
    apply_to: str = option("cls", choices=("cls", "cls+loc"))
    batch_size: int = option(32, low=1)
    lr: float = option(1e-3, low=0, low_open=True, high=10)
    warmup_iters: int = option(0, low=0)
    warmup_factor: float = option(1.0 / 3, low=0, low_open=True, high=1)
    lr_steps: list[int] = option(factory=lambda: [80_000, 100_000], low=1)
    gamma: float = option(0.1, low=0, low_open=True, high=1)
    max_iter: int = option(120_000, low=1)
    momentum: float = option(0.9, low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, low=0, high=1)
    clip_grad_norm: float | None = option(None, low=0, low_open=True)  # None: gradients alone, as SSD's recipes
    seed: int = option(0, low=0)
    checkpoint_every: int = option(1000, low=1, affects_result=False)
    log_every: int = option(10, low=1, affects_result=False)
    num_workers: int = option(4, low=0, affects_result=False)
    # How the device computes (see engine/precision.py): auto = bf16 + channels_last where the GPU has bf16, else
    # fp16 with loss scaling; fp32 on the CPU. compile auto = torch.compile on CUDA. augment_on auto = the training
    # device (the GPU path of data/device_augment.py), the CPU's v2 pipeline on a CPU.
    precision: str = option("auto", choices=("auto", "bf16", "fp16", "fp32"))
    compile: str = option("auto", choices=("auto", "true", "false"), affects_result=False)
    augment_on: str = option("auto", choices=("auto", "cpu", "gpu"))
    pretrained_backbone: str | None = None  # backbone weights by name (scbloss.detectors.backbones); None: scratch
    backbone_file: str | None = None  # a path or URL holding them, instead of their official URL
    fc_weights: str | None = None  # Caffe's reduced fc6/fc7 for a VGG16 backbone (ssd.pytorch's vgg16_reducedfc.pth)
    pretrained: str | None = None  # a whole detector to start from: torchvision_coco (SSD300) or a file of its weights

    def check(self, source: str) -> TrainConfig:
        """What the types and ranges cannot say: registered names, and a schedule that makes sense."""
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
        if self.pretrained_backbone is not None and self.model in detectors.names():
            offered = detectors.get(self.model).backbone_weights
            if self.pretrained_backbone not in offered:
                problems.append(
                    f"pretrained_backbone: {self.model} takes {', '.join(offered) or 'none'}, not "
                    f"{self.pretrained_backbone!r}"
                )
        if self.pretrained is not None and self.model != "ssd300":
            problems.append(f"pretrained: whole-detector weights exist for ssd300 (torchvision's), not {self.model}")
        if sorted(set(self.lr_steps)) != list(self.lr_steps):
            problems.append(f"lr_steps: must be increasing, got {self.lr_steps}")
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def result_keys() -> list[str]:
    """The keys whose value changes what a run computes (a resumed run must keep them)."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("affects_result", True)]


def _number(value, integer: bool, where: str):
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got the text {value!r}") from None
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return int(value)
    return float(value)


def _in_range(value, meta: dict, where: str) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        raise ConfigError(f"{where}: must be {'>' if meta['low_open'] else '>='} {low}, got {value}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        raise ConfigError(f"{where}: must be {'<' if meta['high_open'] else '<='} {high}, got {value}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")


def _typed(value, kind: str, meta: dict, where: str):
    """``value`` as the field type ``kind`` (its annotation, a string), converted or refused."""
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: may not be null")
    if kind in ("int", "float"):
        value = _number(value, kind == "int", where)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif kind == "str":
        if isinstance(value, bool) and meta.get("choices") and "true" in meta["choices"]:
            value = "true" if value else "false"  # `compile: true` is YAML's boolean
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
    elif kind == "list[str]":
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of names, got {value!r}")
        return value
    elif kind == "list[int]":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of whole numbers, e.g. [{value}], got {value!r}")
        value = [_number(item, True, f"{where}[{i}]") for i, item in enumerate(value)]
        for i, item in enumerate(value):
            _in_range(item, meta, f"{where}[{i}]")
        return value
    _in_range(value, meta, where)
    return value


def _build(cls, values, source: str, prefix: str = ""):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(fields)})")
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing key {prefix}{missing[0]}")
    kwargs = {}
    for name, value in values.items():
        where = f"{source}: {prefix}{name}"
        if fields[name].type == "DatasetConfig":
            kwargs[name] = _build(DatasetConfig, value, source, "dataset.")
        else:
            kwargs[name] = _typed(value, fields[name].type, fields[name].metadata, where)
    return cls(**kwargs)


def config_from_dict(values, source: str = "<config>") -> TrainConfig:
    if values is None:
        raise ConfigError(f"{source}: the config is empty (it needs at least `dataset: {{kind: ..., root: ...}}`)")
    return _build(TrainConfig, values, source).check(source)


def load_config(path: Path) -> TrainConfig:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    return config_from_dict(values, str(path))


__all__ = ["ConfigError", "DatasetConfig", "TrainConfig", "config_from_dict", "load_config", "result_keys"]
