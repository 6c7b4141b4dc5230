"""A run's training config, composed from the config's recipes, and where each dataset family's splits are."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..data.prepare import dataset_dir
from ..data.registry import dataset_spec, kind_of
from ..recipes import RECIPES

if TYPE_CHECKING:  # the matrix's figure entries read the splits here
    from .matrix import Run


def _merge(base: dict, override: dict | None) -> dict:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        merged[key] = (
            _merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else copy.deepcopy(value)
        )
    return merged


def _custom(config: dict, family: str) -> dict | None:
    source = config["data"][family]
    return source if source.get("layout") else None


def dataset_kind(config: dict, family: str) -> str:
    """The dataset kind (scbloss.data.registry) a `data` entry reads as: the paper's families (voc, coco) as
    downloaded, on disk or toy; your own datasets by their layout."""
    source = config["data"][family]
    if source.get("layout"):
        return kind_of(source["layout"], "yours")
    return kind_of(family, "toy" if source["source"] == "toy" else "official")


def dataset_layout(config: dict, family: str) -> str:
    """'voc' or 'coco': how a dataset family is annotated (and so evaluated)."""
    return dataset_spec(dataset_kind(config, family)).annotation_format


def train_split(config: dict, family: str) -> str:
    custom = _custom(config, family)
    return custom["train_split"] if custom else dataset_spec(dataset_kind(config, family)).train_split


def test_split(config: dict, family: str) -> str:
    custom = _custom(config, family)
    return custom["test_split"] if custom else dataset_spec(dataset_kind(config, family)).test_split


def dataset_entry(config: dict, family: str, split: str) -> dict:
    """The `dataset` of a train config (and the reader's arguments) for one split of a dataset family."""
    source = config["data"][family]
    kind = dataset_kind(config, family)
    if kind == kind_of("voc", "yours"):
        entry = {"kind": kind, "root": source["path"], "split": split}
        if source.get("classes"):
            entry["classes"] = list(source["classes"])
        return entry
    if kind == kind_of("coco", "yours"):
        return {
            "kind": kind,
            "root": source["images"][split],
            "split": split,
            "annotations": source["annotations"][split],
        }
    if source["source"] == "download":
        return {"kind": kind, "root": str(dataset_dir(family, Path(source["root"]))), "split": split}
    return {"kind": kind, "root": source["path" if source["source"] == "existing" else "root"], "split": split}


def run_recipe(config: dict, run: Run) -> str:
    """The recipe a run trains by (scbloss.recipes): its table row's, else the config's for its model."""
    return run.recipe or _composed(config, run).get("recipe", "original")


def _composed(config: dict, run: Run) -> dict:
    """The train block's defaults, then the dataset's values, then the model's overrides."""
    train = config["train"]
    values = _merge(train.get("defaults", {}), train.get(run.dataset))
    values = _merge(values, train.get("models", {}).get(run.model, {}).get("all"))
    return _merge(values, train.get("models", {}).get(run.model, {}).get(run.dataset))


def train_config(config: dict, run: Run) -> dict:
    """A run's training config: defaults, then the dataset's values, then the model's overrides, then its recipe's
    values (``train.recipes.<recipe>``: ``all``, then the dataset's), then the run, and the final model of the run
    it starts from when its model trains in stages (``train.stages``)."""
    values = _composed(config, run)
    recipe = run_recipe(config, run)
    declared = config["train"].get("recipes", {})
    unknown = sorted(set(declared) - set(RECIPES))
    if unknown:
        raise ValueError(f"train.recipes: {unknown[0]!r} is not a recipe ({', '.join(RECIPES)})")
    layers = declared.get(recipe, {})
    values = _merge(_merge(values, layers.get("all")), layers.get(run.dataset))
    values["recipe"] = recipe
    values.update(
        {
            "model": run.model,
            "weighting": run.weighting,
            "seed": run.seed,
            "dataset": dataset_entry(config, run.dataset, train_split(config, run.dataset)),
        }
    )
    if run.variant:
        values["variant"] = run.variant
    from .matrix import earlier_stage

    earlier = earlier_stage(config, run)
    if earlier is not None:  # its final model, where the rule `train` writes it
        values["init_from"] = paths.run_file(f"{config['results']}/runs", earlier.id, paths.FINAL_MODEL)
        values["init_modules"] = list(config["train"]["stages"][run.model]["modules"])
    return values


def checked_train_config(config: dict, run: Run) -> dict:
    """:func:`train_config`, checked as the training job will read it, so that a bad schedule or value stops the
    dry-run, naming the run, instead of its job."""
    from ..engine.config import config_from_dict

    values = train_config(config, run)
    config_from_dict(values, f"run {run.id} (composed from the config's train block)")
    return values


__all__ = [
    "checked_train_config",
    "dataset_entry",
    "dataset_kind",
    "dataset_layout",
    "run_recipe",
    "test_split",
    "train_config",
    "train_split",
]
