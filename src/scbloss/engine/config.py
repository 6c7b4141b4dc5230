"""Training configuration: a YAML file of known, typed keys with the SSD recipe's defaults.

YAML reads `lr: 1e-3` as a string and `max_iter: "2"` is a string too: numbers written as text are converted,
anything else that is not of a key's type is refused, as is a value outside the key's range, with the file and the
key named. Keys marked ``affects_result=False`` may change when a run resumes; every other key must not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..detection.weighting import APPLY_TO

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file with an unknown key or a bad value; the message names the file and the key."""


def option(
    default=dataclasses.MISSING,
    *,
    doc: str,
    factory=None,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    choices: tuple | Callable[[], tuple] | None = None,
    affects_result=True,
    per_run=False,
):
    """A config field: what it means, its range ([low, high], open ends where asked) or its allowed values (a tuple,
    or a function returning the names a registry owns). ``per_run`` keys are set by the run matrix from a table
    row, not in the pipeline config's train block."""
    metadata = {
        "doc": doc,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": choices,
        "affects_result": affects_result,
        "per_run": per_run,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def choices_of(f: dataclasses.Field) -> tuple | None:
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def _dataset_kinds() -> tuple[str, ...]:
    from ..data.registry import KINDS

    return KINDS


def _backbone_names() -> tuple[str, ...]:
    from ..detectors.backbones import BACKBONE_WEIGHTS

    return tuple(BACKBONE_WEIGHTS)


def _recipe_names() -> tuple[str, ...]:
    from ..recipes import RECIPES

    return tuple(RECIPES)


def _weighting_names() -> tuple[str, ...]:
    from ..detection.weighting import WEIGHTINGS

    return tuple(WEIGHTINGS)


@dataclass
class DatasetConfig:
    kind: str = option(doc="dataset kind (scbloss.data.registry)", choices=_dataset_kinds)
    root: str = option(doc="voc_folder: the folder with Annotations/...; coco_json: the split's image folder")
    split: str = option("", doc="the split to train on; empty: the kind's training split")
    classes: list[str] | None = option(None, doc="voc_folder: class names in label order (default: the annotations')")
    annotations: str | None = option(None, doc="coco_json: the split's COCO JSON")

    def __post_init__(self) -> None:
        if not self.split:
            from ..data.registry import dataset_spec

            self.split = dataset_spec(self.kind).train_split


@dataclass
class TrainConfig:
    dataset: DatasetConfig = option(doc="the data a run trains on", per_run=True)
    model: str = option("ssd300", doc="a registered detector", per_run=True)
    recipe: str = option(
        "original",
        doc="whose conventions it trains and tests by: original (the detector's own scripts) or authors "
        "(the paper's released code, SSD only); scbloss.recipes",
        choices=_recipe_names,
    )
    width: float = option(1.0, doc="channel multiplier of the network", low=0, low_open=True, high=8)
    batch_norm: bool = option(False, doc="BatchNorm in the trunk: to train from scratch (toy runs), not the paper's")
    weighting: str = option("scb", doc="W(M), a form of the paper's Table 1", choices=_weighting_names, per_run=True)
    variant: str = option(
        "", doc="refinedet320: the modules the weighting applies to, arm (default) or arm_odm", per_run=True
    )
    alpha: float = option(1.0, doc="alpha of the scb weighting", low=0)
    beta: float = option(3.0, doc="beta of the scb weighting", low=0, low_open=True)
    apply_to: str = option("cls", doc="the positives' losses W(M) multiplies", choices=APPLY_TO)
    batch_size: int = option(32, doc="images per forward and backward pass, over all GPUs", low=1)
    accumulate_grad: int = option(
        1, doc="passes whose gradients each step averages (Caffe's iter_size): a step sees batch_size x this", low=1
    )
    lr: float = option(1e-3, doc="base learning rate", low=0, low_open=True, high=10)
    warmup_iters: int = option(0, doc="iterations of linear warm-up", low=0)
    warmup_factor: float = option(1.0 / 3, doc="the lr factor warm-up starts from", low=0, low_open=True, high=1)
    lr_steps: list[int] = option(
        factory=lambda: [80_000, 100_000], doc="iterations where lr is multiplied by gamma", low=1
    )
    gamma: float = option(0.1, doc="lr factor at each of lr_steps", low=0, low_open=True, high=1)
    max_iter: int = option(120_000, doc="training iterations", low=1)
    momentum: float = option(0.9, doc="SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(5e-4, doc="SGD weight decay", low=0, high=1)
    clip_grad_norm: float | None = option(
        None, doc="gradient norm clip; null: none, as SSD's recipes", low=0, low_open=True
    )
    seed: int = option(0, doc="seeds the weights, the batches and the augmentation", low=0)
    checkpoint_every: int = option(1000, doc="iterations between checkpoints", low=1, affects_result=False)
    log_every: int = option(10, doc="iterations between metrics rows", low=1, affects_result=False)
    num_workers: int = option(4, doc="DataLoader worker processes", low=0, affects_result=False)
    # How the device computes (engine/precision.py, data/device_augment.py, data/image_cache.py).
    precision: str = option(
        "auto",
        doc="auto: bf16 + channels_last where the GPU has bf16, else fp16 with loss scaling; fp32 on a CPU; fastest: "
        "as auto on a GPU, on a CPU channels_last and bf16 where the CPU has bf16 instructions (AVX512-BF16, AMX)",
        choices=("auto", "fastest", "bf16", "fp16", "fp32"),
    )
    compile: str = option(
        "auto", doc="torch.compile the network; auto: on CUDA", choices=("auto", "true", "false"), affects_result=False
    )
    augment_on: str = option(
        "auto", doc="where augmentation runs; auto: the training device", choices=("auto", "cpu", "gpu")
    )
    cache: str = option(
        "none",
        doc="decoded training images kept in host memory (memory) or on the training device (gpu), refused when "
        "they do not fit; the same batches as none",
        choices=("none", "memory", "gpu"),
        affects_result=False,
    )
    pretrained_backbone: str | None = option(
        None, doc="backbone weights by name (scbloss.detectors.backbones); null: from scratch", choices=_backbone_names
    )
    backbone_file: str | None = option(None, doc="a path or URL holding them, instead of their official URL")
    fc_weights: str | None = option(
        None,
        doc="Caffe's reduced fc6/fc7 for a VGG16 backbone: a path or URL in ssd.pytorch's vgg16_reducedfc.pth "
        "layout; null: the backbone's published file (vgg16_caffe: ssd.pytorch's); xavier: Xavier-initialised",
    )
    pretrained: str | None = option(
        None, doc="a whole detector to start from: torchvision_coco (SSD300) or a file of its weights"
    )
    init_from: str | None = option(
        None,
        doc="a model_final.pt of an earlier stage whose init_modules start this run (the workflow sets it)",
        per_run=True,
    )
    init_modules: list[str] | None = option(None, doc="the network's modules init_from gives (e.g. trunk, extras)")
    freeze: list[str] | None = option(
        None,
        doc="the network's modules kept as they start: no gradient, BatchNorm on its running statistics "
        "(Caffe's lr_mult 0 and use_global_stats)",
    )

    def check(self, source: str, given: frozenset[str] = frozenset()) -> TrainConfig:
        """What the types and ranges cannot say: registered names, and a schedule that makes sense (``given``: the
        keys the config sets; lr_steps left at their default may lie past a short run's max_iter)."""
        from .. import detectors

        problems = []
        if self.model not in detectors.names():
            problems.append(f"model: {self.model!r} is not one of {', '.join(detectors.names())}")
        else:
            try:
                detectors.get(self.model).check_variant(self.variant)
            except ValueError as error:
                problems.append(f"variant: {error}")
            from ..recipes import recipe

            problem = recipe(self.recipe).check_model(self.model)
            if problem:
                problems.append(f"recipe: {problem}")
        if self.pretrained_backbone is not None and self.model in detectors.names():
            offered = detectors.get(self.model).backbone_weights
            if self.pretrained_backbone not in offered:
                problems.append(
                    f"pretrained_backbone: {self.model} takes {', '.join(offered) or 'none'}, not "
                    f"{self.pretrained_backbone!r}"
                )
        if self.pretrained is not None and self.recipe != "original":
            problems.append(
                f"pretrained: torchvision's SSD300 was trained with the original recipe's priors, not {self.recipe}'s"
            )
        if self.pretrained is not None and self.model != "ssd300":
            problems.append(f"pretrained: whole-detector weights exist for ssd300 (torchvision's), not {self.model}")
        if (self.init_from is None) != (self.init_modules is None):
            problems.append("init_from and init_modules: give both (which file, and which of its modules) or neither")
        if sorted(set(self.lr_steps)) != list(self.lr_steps):
            problems.append(f"lr_steps: must be increasing, got {self.lr_steps}")
        elif "lr_steps" in given and self.lr_steps and self.lr_steps[-1] >= self.max_iter:
            problems.append(
                f"lr_steps: {self.lr_steps[-1]} is not below max_iter {self.max_iter} (it would never apply)"
            )
        if self.warmup_iters > self.max_iter:  # legal (a run cut short), so a warning
            log.warning(
                "%s: warmup_iters %d exceeds max_iter %d: the warm-up never ends",
                source,
                self.warmup_iters,
                self.max_iter,
            )
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


def _in_range(value, f: dataclasses.Field, where: str) -> None:
    meta = f.metadata
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        raise ConfigError(f"{where}: must be {'>' if meta['low_open'] else '>='} {low}, got {value}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        raise ConfigError(f"{where}: must be {'<' if meta['high_open'] else '<='} {high}, got {value}")
    choices = choices_of(f)
    if choices and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")


def _as_int(value, f, where):
    value = _number(value, True, where)
    _in_range(value, f, where)
    return value


def _as_float(value, f, where):
    value = _number(value, False, where)
    _in_range(value, f, where)
    return value


def _as_bool(value, f, where):
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _as_str(value, f, where):
    if isinstance(value, bool) and "true" in (choices_of(f) or ()):
        value = "true" if value else "false"  # `compile: true` is YAML's boolean
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    _in_range(value, f, where)
    return value


def _as_names(value, f, where):
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return value


def _as_ints(value, f, where):
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of whole numbers, e.g. [{value}], got {value!r}")
    return [_as_int(item, f, f"{where}[{i}]") for i, item in enumerate(value)]


def _as_dataset(value, f, where):
    source, _, _ = where.partition(": ")
    return _build(DatasetConfig, value, source, "dataset.")


# Each field type a config may declare, the function that converts or refuses a value of it, and its JSON Schema.
CONVERTERS = {
    "int": (_as_int, {"type": "integer"}),
    "float": (_as_float, {"type": "number"}),
    "bool": (_as_bool, {"type": "boolean"}),
    "str": (_as_str, {"type": "string"}),
    "list[str]": (_as_names, {"type": "array", "items": {"type": "string"}, "minItems": 1}),
    "list[int]": (_as_ints, {"type": "array", "items": {"type": "integer"}}),
    "DatasetConfig": (_as_dataset, {"type": "object"}),
}


def _field_type(f: dataclasses.Field) -> tuple[str, bool]:
    """(the type's name without ``| None``, whether null is allowed)."""
    kind = str(f.type)
    return kind.removesuffix(" | None"), kind.endswith(" | None")


def _typed(value, f: dataclasses.Field, where: str):
    """``value`` as the field's type, converted or refused."""
    kind, optional = _field_type(f)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: may not be null")
    return CONVERTERS[kind][0](value, f, where)


def _check_declared_types(*classes) -> None:
    """Every field's type has a converter: a field of a type nobody checks is an error at import, not a pass."""
    for cls in classes:
        for f in dataclasses.fields(cls):
            if _field_type(f)[0] not in CONVERTERS:
                raise TypeError(
                    f"{cls.__name__}.{f.name}: no converter for the type {f.type!r} ({', '.join(CONVERTERS)})"
                )


_check_declared_types(DatasetConfig, TrainConfig)


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
    kwargs = {name: _typed(value, fields[name], f"{source}: {prefix}{name}") for name, value in values.items()}
    return cls(**kwargs)


def default_of(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def train_values_schema() -> dict:
    """The JSON Schema of every train key a pipeline config may set (the schema's ``train_values`` block), made from
    the fields: type, range, choices; the default and meaning in the description. The schema carries no
    ``default`` keyword, which Snakemake's validate would fill into every override layer."""
    properties = {}
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["per_run"]:
            continue
        kind, optional = _field_type(f)
        schema = dict(CONVERTERS[kind][1])
        bounds = schema["items"] if kind == "list[int]" else schema
        meta = f.metadata
        if meta["low"] is not None:
            bounds["exclusiveMinimum" if meta["low_open"] else "minimum"] = meta["low"]
        if meta["high"] is not None:
            bounds["exclusiveMaximum" if meta["high_open"] else "maximum"] = meta["high"]
        choices = choices_of(f)
        if choices:
            # YAML reads an unquoted true/false as a boolean; the loader turns it back into the name
            schema["enum"] = [{"true": True, "false": False}.get(c, c) for c in choices]
            if any(isinstance(c, bool) for c in schema["enum"]):
                schema["type"] = [schema["type"], "boolean"]
        if optional:
            schema["type"] = [schema["type"], "null"]
            if choices:
                schema["enum"].append(None)
        schema["description"] = f"{meta['doc']} (default: {json.dumps(default_of(f))})"
        properties[f.name] = schema
    return properties


SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
BEGIN, END = "# BEGIN train keys", "# END train keys"


def write_train_schema(schema_file: Path = SCHEMA) -> None:
    """Write :func:`train_values_schema` into the schema file between its BEGIN/END lines, one key per line."""
    text = schema_file.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    indent = head.rsplit("\n", 1)[1]
    lines = [
        f"{indent}{name}: {json.dumps(schema, ensure_ascii=False, separators=(', ', ': '))}"
        for name, schema in train_values_schema().items()
    ]
    body = "\n".join(lines)
    schema_file.write_text(
        f"{head}{BEGIN} (python -m scbloss.engine.config writes them from TrainConfig)\n{body}\n{indent}{END}{tail}"
    )


def config_from_dict(values, source: str = "<config>") -> TrainConfig:
    if values is None:
        raise ConfigError(f"{source}: the config is empty (it needs at least `dataset: {{kind: ..., root: ...}}`)")
    return _build(TrainConfig, values, source).check(source, frozenset(values))


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


if __name__ == "__main__":
    write_train_schema()
