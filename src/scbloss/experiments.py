"""The experiment matrix: which training runs the requested tables need, and each run's full training config.

Every table file in ``paper_tables/`` names, row by row, the run behind it (dataset family x model x weighting
[x variant]); the matrix is the union over the requested tables, times the configured number of seeds, so a run
that several tables use is trained once. Nothing here imports torch: the workflow parses with this module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import detectors
from .detection.weighting import WEIGHTINGS

TRAIN_SPLIT = {"voc": "trainval", "coco": "train"}  # the paper's families; your own datasets name theirs
TEST_SPLIT = {"voc": "test", "coco": "val"}


class TableSpecError(ValueError):
    """A table file that does not describe a table; the message names the file and the row."""


@dataclass(frozen=True, order=True)
class Run:
    dataset: str  # voc | coco (the family; toy or real data depends on the config)
    model: str
    weighting: str
    variant: str = ""
    seed: int = 0

    @property
    def id(self) -> str:
        variant = f"-{self.variant}" if self.variant else ""
        return f"{self.dataset}-{self.model}-{self.weighting}{variant}-s{self.seed}"

    @property
    def setting(self) -> Run:
        """The same run without its seed: what a table row refers to."""
        return Run(self.dataset, self.model, self.weighting, self.variant, 0)


def metrics_path(runs_dir: str | Path, run_id: str, split: str) -> str:
    """Where a run's evaluation on a split lives, under results/runs or an imported metrics_dir (same layout)."""
    return f"{runs_dir}/{run_id}/eval/{split}/metrics.json"


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


def row_run(spec: dict, row: dict, seed: int = 0) -> Run:
    run = row["run"]
    return Run(spec["dataset"], run["model"], run["weighting"], run.get("variant", ""), seed)


def table_specs(config: dict, schema: Path | None = None) -> list[dict]:
    """The requested paper tables (files, checked) and the comparison tables of the config's own datasets."""
    folder = Path(config["tables_dir"])
    specs = [load_table_spec(folder / f"{table}.yaml", schema) for table in config["tables"]]
    for spec in specs:
        if spec["dataset"] not in config["data"]:
            raise TableSpecError(
                f"{folder / spec['id']}.yaml: dataset {spec['dataset']!r} is not one of the config's "
                f"data entries ({', '.join(config['data'])})"
            )
    return specs + comparison_specs(config)


COMPARISON_THRESHOLDS = (0.01, 0.1, 0.3)


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
        recall = [f"{bucket}@{t}" for t in COMPARISON_THRESHOLDS for bucket in ("small", "medium", "large")]
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
                    "columns": [{"key": key, "label": key} for key in main + recall],
                    "rows": [{"label": w, "run": {"model": model, "weighting": w}} for w in entry["weightings"]],
                }
            )
    return specs


COCO_STATS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR_1", "AR_10", "AR_100", "AR_S", "AR_M", "AR_L")


def runs_for_tables(specs: list[dict], seeds: int) -> list[Run]:
    """Distinct runs the tables need (each seed a run), in a stable order."""
    return sorted({row_run(spec, row, seed) for spec in specs for row in spec["rows"] for seed in range(seeds)})


def eval_splits(specs: list[dict], run: Run) -> list[str]:
    """The evaluation splits a run is needed on (a VOC run on 'test', a COCO run on 'val', ...)."""
    return sorted({spec["split"] for spec in specs for row in spec["rows"] if row_run(spec, row) == run.setting})


def figure_entries(config: dict, runs) -> list[dict]:
    """The matching-statistics figures (paper Figs. 1 and 3): those the config lists, plus, with
    `figures.every_trained_model`, one per dataset x model of the runs on its training split; distinct, in order."""
    figures = config.get("figures") or {}
    entries = [{**entry, "augment": bool(entry.get("augment"))} for entry in figures.get("match_stats", [])]
    if figures.get("every_trained_model"):
        pairs = dict.fromkeys((run.dataset, run.model) for run in sorted(runs))
        entries += [{"dataset": d, "model": m, "split": train_split(config, d), "augment": False} for d, m in pairs]
    distinct = {}
    for entry in entries:
        distinct.setdefault((entry["dataset"], entry["model"], entry["split"], entry["augment"]), entry)
    return list(distinct.values())


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


def dataset_layout(config: dict, family: str) -> str:
    """'voc' or 'coco': how a dataset family is annotated (and so evaluated, and which recipe's priors it takes)."""
    custom = _custom(config, family)
    return custom["layout"] if custom else family


def train_split(config: dict, family: str) -> str:
    custom = _custom(config, family)
    return custom["train_split"] if custom else TRAIN_SPLIT[family]


def test_split(config: dict, family: str) -> str:
    custom = _custom(config, family)
    return custom["test_split"] if custom else TEST_SPLIT[family]


def dataset_entry(config: dict, family: str, split: str) -> dict:
    """The `dataset` of a train config (and the reader's arguments) for one split of a dataset family."""
    source = config["data"][family]
    custom = _custom(config, family)
    if custom and custom["layout"] == "voc":
        entry = {"kind": "voc_folder", "root": custom["path"], "split": split}
        if custom.get("classes"):
            entry["classes"] = list(custom["classes"])
        return entry
    if custom:
        return {
            "kind": "coco_json",
            "root": custom["images"][split],
            "split": split,
            "annotations": custom["annotations"][split],
        }
    if source["source"] == "toy":
        return {"kind": f"toy_{family}", "root": source["root"], "split": split}
    if source["source"] == "existing":
        return {"kind": family, "root": source["path"], "split": split}
    return {
        "kind": family,
        "root": str(Path(source["root"]) / ("VOCdevkit" if family == "voc" else "coco")),
        "split": split,
    }


def train_config(config: dict, run: Run) -> dict:
    """A run's training config: defaults, then the dataset's recipe, then the model's overrides, then the run."""
    recipe = config["train"]
    values = _merge(recipe.get("defaults", {}), recipe.get(run.dataset))
    values = _merge(values, recipe.get("models", {}).get(run.model, {}).get("all"))
    values = _merge(values, recipe.get("models", {}).get(run.model, {}).get(run.dataset))
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
    return values


def training_rate(config: dict, model: str) -> float | None:
    """Training images/s per GPU of a detector: the config's own `throughput` if it names the model, else the rate
    the detector's module declares as measured on the device `throughput_on` names."""
    if model in config["throughput"]:
        return config["throughput"][model]
    measured = detectors.get(model).throughput.get(config["throughput_on"])
    return measured.images_per_s if measured else None


def gpus_per_run(config: dict) -> int:
    """GPUs a training run uses: the config's resources.train.gpu per node x nodes (at least one)."""
    train = config["resources"]["train"]
    return max(1, train.get("gpu") or 0) * max(1, train.get("nodes") or 1)


def gpu_hours(config: dict, run: Run) -> float:
    """Estimated GPU-hours of training (GPUs x hours): images seen / training images per second per GPU, which is
    the same on N GPUs when they scale linearly (each takes batch / N images of every step)."""
    values = train_config(config, run)
    rate = training_rate(config, run.model)
    return values["max_iter"] * values["batch_size"] / rate / 3600 if rate else float("nan")


def plan(config: dict) -> str:
    """What the config will run: per table, its runs (new and shared) and their estimated GPU-hours."""
    specs = table_specs(config)
    seeds = int(config["seeds"])
    lines, seen = [], set()
    total_hours = 0.0
    for spec in specs:
        runs = runs_for_tables([spec], seeds)
        new = [r for r in runs if r not in seen]
        seen.update(runs)
        hours = sum(gpu_hours(config, r) for r in new)
        total_hours += hours
        lines.append(f"{spec['id']}: {len(runs)} runs ({len(new)} new), {hours:.1f} GPU-h for the new ones")
    rates = {model: training_rate(config, model) for model in sorted({run.model for run in seen})}
    gpus = gpus_per_run(config)
    longest = max((gpu_hours(config, run) for run in seen), default=0.0) / gpus
    lines.append(
        f"total: {len(seen)} training runs, {total_hours:.1f} GPU-h of training (GPUs x hours); with {gpus} "
        f"GPU(s) per run the longest run takes {longest:.1f} h"
    )
    lines.append(
        f"rates (images/s per GPU, measured on {config['throughput_on']!r} unless the config's throughput "
        "sets them): " + ", ".join(f"{m} {r if r else 'unknown'}" for m, r in rates.items())
    )
    lines.append("jobs per rule: see `snakemake -n` (its Job stats)")
    return "\n".join(lines)


__all__ = [
    "Run",
    "TableSpecError",
    "comparison_specs",
    "dataset_entry",
    "dataset_layout",
    "eval_splits",
    "figure_entries",
    "gpu_hours",
    "gpus_per_run",
    "load_table_spec",
    "metrics_path",
    "plan",
    "row_run",
    "runs_for_tables",
    "table_specs",
    "test_split",
    "train_config",
    "train_split",
    "training_rate",
]
