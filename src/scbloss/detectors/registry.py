"""The detector registry: every detector declares itself once, by name, in a module of its own.

A declaration is plain data plus references ("module:attribute") to the code that builds the network, its loss
and its backbone weights, so the workflow can list detectors, prior layouts and throughputs without importing
torch. Nothing else in the project dispatches on a detector's name.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.resources
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..detection.layout import PriorLayout
from ..detection.test_settings import SSD_TEST, TestSettings

# os.pathsep-separated detector modules (dotted names or .py files) to load besides the built-in ones; the
# workflow sets it from the config's `detector_modules`, so every job it starts sees the same detectors.
MODULES_ENV = "SCBLOSS_DETECTOR_MODULES"

Reference = str | Callable[..., Any]  # "package.module:attribute", or the object itself


@dataclass(frozen=True)
class Throughput:
    """A measured training rate: images per second, and how it was measured (device, precision, batch, date)."""

    images_per_s: float
    measured: str


RATES_FILE = "throughput.yaml"  # the built-in detectors' measured rates, with their provenance


@functools.cache
def measured_rates() -> dict[str, dict[str, Throughput]]:
    """Per detector and device key, the rate ``throughput.yaml`` records, its provenance as one sentence."""
    table = yaml.safe_load(importlib.resources.files(__package__).joinpath(RATES_FILE).read_text())
    rates = {}
    for name, by_device in table["rates"].items():
        rates[name] = {}
        for key, entry in by_device.items():
            fields = {**table["devices"][key], **(entry if isinstance(entry, dict) else {"images_per_s": entry})}
            rates[name][key] = Throughput(fields.pop("images_per_s"), _provenance(fields))
    return rates


def _provenance(fields: dict) -> str:
    """One sentence of a rate's fields: device, what ran, precision, batch, torch, date; note; where recorded."""
    parts = [fields["device"], fields["measured"], fields["precision"], f"batch {fields['batch']}"]
    parts += [f"torch {fields['torch']}", fields.get("date")]
    text = ", ".join(str(part) for part in parts if part)
    if fields.get("note"):
        text += f"; {fields['note']}"
    return text + (f"; recorded in {fields['recorded']}" if fields.get("recorded") else "")


@dataclass(frozen=True, eq=False)
class DetectorSpec:
    """What the project needs to know about one detector.

    ``network(layout, num_classes, width, batch_norm)`` builds the nn.Module; ``criterion(weighting=, alpha=,
    beta=, apply_to=[, variant=])`` its training loss; ``backbone_weights`` names the pretrained backbones it can
    start from (see :mod:`.backbones`). ``layouts`` maps a dataset family ('voc', 'coco') to the prior layout of
    that family's recipe; ``throughput`` maps a device key (see ``config: throughput_on``) to a measured rate.
    ``augmentation`` and ``init`` map a dataset family to what the detector's own scripts do there where it is not
    SSD's (the original recipe, :meth:`scbloss.recipes.Recipe.augmentation_for` / ``init_for``): an augmentation
    name (``scbloss.data.loader.training_transform``), and a callable(model) run on the newly built network.
    """

    name: str
    network: Reference
    layouts: Mapping[str, PriorLayout]
    criterion: Reference = "scbloss.detection.criterion:SingleShotCriterion"
    backbone_weights: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    throughput: Mapping[str, Throughput] = field(default_factory=dict)
    summary: str = ""
    test: TestSettings = SSD_TEST  # how its own scripts test it (the original recipe)
    augmentation: Mapping[str, str] = field(default_factory=dict)
    init: Mapping[str, Reference] = field(default_factory=dict)

    def layout(self, family: str) -> PriorLayout:
        try:
            return self.layouts[family]
        except KeyError:
            raise ValueError(
                f"{self.name}: no prior layout for dataset family {family!r}; it has {', '.join(self.layouts)}"
            ) from None

    def check_variant(self, variant: str) -> None:
        if variant and variant not in self.variants:
            offered = f"its variants are {', '.join(self.variants)}" if self.variants else "it has no variants"
            raise ValueError(f"{self.name}: no variant {variant!r} ({offered})")


def resolve(reference: Reference) -> Any:
    """The object a "module:attribute" reference names (objects pass through)."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_REGISTRY: dict[str, DetectorSpec] = {}
_LOADED: set[str] = set()


def register(spec: DetectorSpec) -> DetectorSpec:
    """Add a detector; a second declaration of the same name is an error (a module loaded twice is not). One that
    declares no ``throughput`` takes the rates ``throughput.yaml`` records under its name, if any."""
    if not spec.throughput and spec.name in measured_rates():
        spec = dataclasses.replace(spec, throughput=measured_rates()[spec.name])
    known = _REGISTRY.get(spec.name)
    if known is not None and known is not spec and known.network != spec.network:
        raise ValueError(f"detector {spec.name!r} is declared twice ({known.network} and {spec.network})")
    _REGISTRY[spec.name] = spec
    return spec


def load_module(reference: str) -> None:
    """Import a detector module by dotted name or by the path of its .py file (once)."""
    if reference in _LOADED:
        return
    if reference.endswith(".py"):
        path = Path(reference).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"detector module {reference}: no such file")
        name = f"scbloss_detector_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(reference)
    _LOADED.add(reference)


def _load_configured() -> None:
    for reference in filter(None, os.environ.get(MODULES_ENV, "").split(os.pathsep)):
        load_module(reference)


def get(name: str) -> DetectorSpec:
    _load_configured()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every registered detector, in the order they were declared."""
    _load_configured()
    return tuple(_REGISTRY)


__all__ = [
    "DetectorSpec",
    "MODULES_ENV",
    "RATES_FILE",
    "Throughput",
    "get",
    "load_module",
    "measured_rates",
    "names",
    "register",
    "resolve",
]
