"""A run's training config, composed from the config's recipes, and where each dataset family's splits are."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..data.prepare import dataset_dir
from ..data.registry import dataset_spec, kind_of
from ..data.toy import toy_folders
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
    """A dataset of yours as the readers take it (a generated toy one with its folders filled in); None for the
    paper's families."""
    source = config["data"][family]
    if not source.get("layout"):
        return None
    if source["source"] == "toy":
        return {**toy_folders(source["root"], source["layout"]), **source}
    return source


def toy_datasets(config: dict) -> dict[str, dict]:
    """The folders ``scbloss data toy`` writes for this config -> the size and seed of each: the paper families' shared
    one (``toy``) and each toy dataset of yours (its own ``toy``)."""
    folders = {}
    for family, source in config["data"].items():
        if source["source"] != "toy":
            continue
        size = source.get("toy", {}) if source.get("layout") else config.get("toy", {})
        if folders.setdefault(source["root"], size) != size:
            raise ValueError(f"data.{family}: root {source['root']!r} holds another toy dataset, of another size")
    return folders


def check_train_block(config: dict) -> None:
    """Every key of ``train`` besides its own sections names a dataset of the config (its values override)."""
    sections = {"defaults", "models", "stages", "recipes"}
    for key in config.get("train", {}):
        if key not in sections and key not in config["data"]:
            raise ValueError(
                f"train.{key}: neither a section ({', '.join(sorted(sections))}) nor a dataset of `data` "
                f"({', '.join(config['data'])})"
            )


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
    source = _custom(config, family) or config["data"][family]
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
    "check_train_block",
    "checked_train_config",
    "dataset_entry",
    "dataset_kind",
    "dataset_layout",
    "run_recipe",
    "test_split",
    "train_config",
    "toy_datasets",
    "train_split",
]
