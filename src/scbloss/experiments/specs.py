"""The tables: the paper's table files, checked, and the comparison tables the config's `comparisons` ask for."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from .. import detectors
from ..conventions import COCO_STATS, RECALL_THRESHOLDS, SIZE_BUCKETS
from ..detection.weighting import WEIGHTINGS
from ..recipes import RECIPES
from .matrix import Run
from .run_config import dataset_layout, run_recipe, test_split


class TableSpecError(ValueError):
    """A table file that does not describe a table; the message names the file and the row."""


def load_table_spec(path: Path, schema: Path | None = None) -> dict:
    """A table file, checked against ``schema`` (workflow/schemas/table.schema.yaml) and the registered names."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise TableSpecError(f"{path}: unreadable table file ({error})") from error
    if schema is not None:
        _validate_table(spec, path, yaml.safe_load(Path(schema).read_text()))
    return spec


def _validate_table(spec, path: Path, schema: dict) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(spec), key=lambda e: list(e.absolute_path))
    problems = [f"{_where(spec, list(e.absolute_path))}: {e.message}" for e in errors]
    if not problems:
        labels = {row["label"] for row in spec["rows"]}
        keys = {column["key"] for column in spec["columns"]}
        for index, row in enumerate(spec["rows"]):
            run, where = row["run"], _where(spec, ["rows", index])
            if run["model"] not in detectors.names():
                problems.append(
                    f"{where}: run.model {run['model']!r} is not a registered detector ({', '.join(detectors.names())})"
                )
            elif run.get("variant"):
                try:
                    detectors.get(run["model"]).check_variant(run["variant"])
                except ValueError as error:
                    problems.append(f"{where}: run.variant: {error}")
            if run.get("recipe") and run["recipe"] not in RECIPES:
                problems.append(f"{where}: run.recipe {run['recipe']!r} is not one of {', '.join(RECIPES)}")
            if run["weighting"] not in WEIGHTINGS:
                problems.append(f"{where}: run.weighting {run['weighting']!r} is not one of {', '.join(WEIGHTINGS)}")
            if spec["kind"] == "recall" and "threshold" not in row:
                problems.append(f"{where}: a recall table's row needs a threshold")
            if row.get("baseline") and row["baseline"] not in labels:
                problems.append(f"{where}: baseline {row['baseline']!r} is not the label of a row")
            unknown = sorted(set(row.get("paper", {})) - keys)
            if unknown:
                problems.append(f"{where}: paper values for unknown column(s) {', '.join(unknown)}")
    if problems:
        raise TableSpecError(f"{path}: " + "; ".join(problems))


def _where(spec, location: list) -> str:
    """'rows[3] ("SSD300 w/ scb loss")' for a location inside a table file."""
    if len(location) >= 2 and location[0] == "rows" and isinstance(location[1], int):
        row = spec["rows"][location[1]]
        label = f' ("{row["label"]}")' if isinstance(row, dict) and "label" in row else ""
        rest = "".join(f".{part}" for part in location[2:])
        return f"rows[{location[1]}]{label}{rest}"
    return ".".join(str(part) for part in location) or "top level"


def table_specs(config: dict, schema: Path | None = None) -> list[dict]:
    """The requested paper tables (files, checked) and the comparison tables of the config's own datasets."""
    folder = Path(config["tables_dir"])
    specs = [load_table_spec(folder / f"{table}.yaml", schema) for table in config["tables"]]
    evaluated = recall_thresholds(config)
    for spec in specs:
        if spec["dataset"] not in config["data"]:
            raise TableSpecError(
                f"{folder / spec['id']}.yaml: dataset {spec['dataset']!r} is not one of the config's "
                f"data entries ({', '.join(config['data'])})"
            )
        wanted = sorted({row["threshold"] for row in spec["rows"] if "threshold" in row})
        missing = [t for t in wanted if not any(math.isclose(t, e) for e in evaluated)]
        if missing:
            raise TableSpecError(
                f"{folder / spec['id']}.yaml: its rows count recall at {', '.join(map(str, missing))}, which the "
                f"config's evaluate.thresholds ({', '.join(map(str, evaluated))}) leave out; add them there"
            )
        for row in spec["rows"]:  # a row naming the recipe the config gives its model is that run, not another
            run = row["run"]
            if run.get("recipe") and run["recipe"] == run_recipe(config, Run(spec["dataset"], run["model"], "none")):
                row["run"] = {key: value for key, value in run.items() if key != "recipe"}
    return specs + comparison_specs(config)


def recall_thresholds(config: dict) -> tuple[float, ...]:
    """The confidence thresholds recall is evaluated at: the config's ``evaluate.thresholds``, else the paper's."""
    return tuple(config.get("evaluate", {}).get("thresholds", RECALL_THRESHOLDS))


def comparison_specs(config: dict) -> list[dict]:
    """One table per `comparisons` entry and detector: a row per weighting, the dataset's main metric(s) and recall
    by object size at each threshold, mean and std over seeds, the difference to the unweighted row."""
    specs = []
    for entry in config.get("comparisons") or []:
        family = entry["dataset"]
        if family not in config["data"]:
            raise TableSpecError(f"comparisons: dataset {family!r} is not one of the config's data entries")
        layout = dataset_layout(config, family)
        main = ["voc_map"] if layout == "voc" else list(COCO_STATS)
        recall = [f"{bucket}@{t}" for t in recall_thresholds(config) for bucket in SIZE_BUCKETS]
        for model in entry["models"]:
            if model not in detectors.names():
                raise TableSpecError(f"comparisons: {model!r} is not a registered detector")
            unknown = [w for w in entry["weightings"] if w not in WEIGHTINGS]
            if unknown:
                raise TableSpecError(f"comparisons: weighting {unknown[0]!r} is not one of {', '.join(WEIGHTINGS)}")
            specs.append(
                {
                    "id": f"{family}-{model}",
                    "title": f"{model} on {family}: the scale-balanced loss against the unweighted one",
                    "kind": "comparison",
                    "dataset": family,
                    "split": test_split(config, family),
                    "baseline": entry["weightings"][0],
                    "seeds": entry.get("seeds", config.get("seeds", 1)),
                    "columns": [{"key": key, "label": key} for key in main + recall],
                    "rows": [{"label": w, "run": {"model": model, "weighting": w}} for w in entry["weightings"]],
                }
            )
    return specs


__all__ = ["TableSpecError", "comparison_specs", "load_table_spec", "table_specs"]
