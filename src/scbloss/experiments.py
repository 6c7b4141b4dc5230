"""The experiment matrix: which training runs the requested tables need, and each run's full training config.

Every table file in ``paper_tables/`` names, row by row, the run behind it (dataset family x model x weighting
[x variant]); the matrix is the union over the requested tables, times the configured number of seeds, so a run
that several tables use is trained once. Runs whose model is not built yet are left out and their rows render as
"not run".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from .models import MODELS

TRAIN_SPLIT = {"voc": "trainval", "coco": "train"}


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
    def setting(self) -> "Run":
        """The same run without its seed: what a table row refers to."""
        return Run(self.dataset, self.model, self.weighting, self.variant, 0)


def load_table_spec(path: Path) -> dict:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: unreadable table file ({error})") from error
    for key in ("id", "kind", "dataset", "split", "columns", "rows"):
        if key not in spec:
            raise ValueError(f"{path}: missing key {key!r}")
    return spec


def row_run(spec: dict, row: dict, seed: int = 0) -> Run:
    run = row["run"]
    return Run(spec["dataset"], run["model"], run["weighting"], run.get("variant", ""), seed)


def table_specs(config: dict) -> list[dict]:
    folder = Path(config.get("tables_dir", "paper_tables"))
    return [load_table_spec(folder / f"{table}.yaml") for table in config["tables"]]


def runs_for_tables(specs: list[dict], seeds: int, available=MODELS) -> list[Run]:
    """Distinct runs the tables need (each seed a run), models that exist only, in a stable order."""
    runs = {row_run(spec, row, seed) for spec in specs for row in spec["rows"] for seed in range(seeds)}
    return sorted(run for run in runs if run.model in available)


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
        entries += [{"dataset": d, "model": m, "split": TRAIN_SPLIT[d], "augment": False} for d, m in pairs]
    distinct = {}
    for entry in entries:
        if entry["model"] in MODELS:
            distinct.setdefault((entry["dataset"], entry["model"], entry["split"], entry["augment"]), entry)
    return list(distinct.values())


def _merge(base: dict, override: dict | None) -> dict:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else copy.deepcopy(value)
    return merged


def dataset_location(config: dict, family: str) -> tuple[str, str]:
    """(reader kind, root folder) of a dataset family under the config's data source."""
    source = config["data"][family]
    if source["source"] == "toy":
        return f"toy_{family}", source["root"]
    if source["source"] == "existing":
        return family, source["path"]
    return family, str(Path(source["root"]) / ("VOCdevkit" if family == "voc" else "coco"))


def train_config(config: dict, run: Run) -> dict:
    """A run's training config: defaults, then the dataset's recipe, then the model's overrides, then the run."""
    recipe = config["train"]
    values = _merge(recipe.get("defaults", {}), recipe.get(run.dataset))
    values = _merge(values, recipe.get("models", {}).get(run.model, {}).get("all"))
    values = _merge(values, recipe.get("models", {}).get(run.model, {}).get(run.dataset))
    kind, root = dataset_location(config, run.dataset)
    values.update({
        "model": run.model, "weighting": run.weighting, "seed": run.seed,
        "dataset": {"kind": kind, "root": root, "split": TRAIN_SPLIT[run.dataset]},
    })
    if run.variant:
        values["variant"] = run.variant
    return values


def gpu_hours(config: dict, run: Run) -> float:
    """Estimated GPU-hours of training: images seen / configured training images per second per GPU."""
    values = train_config(config, run)
    throughput = config.get("throughput", {}).get(run.model)
    return values["max_iter"] * values["batch_size"] / throughput / 3600 if throughput else float("nan")


def plan(config: dict) -> str:
    """What the config will run: per table, its runs (new and shared), jobs and estimated GPU-hours."""
    specs = table_specs(config)
    seeds = int(config.get("seeds", 1))
    lines, seen = [], set()
    total_hours = 0.0
    for spec in specs:
        runs = runs_for_tables([spec], seeds)
        missing = sorted({row_run(spec, r).model for r in spec["rows"]} - set(MODELS))
        new = [r for r in runs if r not in seen]
        seen.update(runs)
        hours = sum(gpu_hours(config, r) for r in new)
        total_hours += hours
        note = f"; not built yet: {', '.join(missing)}" if missing else ""
        lines.append(f"{spec['id']}: {len(runs)} runs ({len(new)} new), {hours:.1f} GPU-h for the new ones{note}")
    counts = job_counts(config)
    lines.append(f"total: {counts['train']} training jobs, {counts['evaluate'] + counts['evaluate_test_dev']} "
                 f"evaluation jobs, {total_hours:.1f} GPU-h of training")
    lines.append(f"jobs: {sum(counts.values())} in all (" + ", ".join(f"{rule} {n}" for rule, n in counts.items() if n)
                 + ")")
    return "\n".join(lines)


def job_counts(config: dict) -> dict[str, int]:
    """Jobs per rule that `snakemake` (target `all`) runs from scratch for this config, derived as the rules are."""
    specs = table_specs(config)
    runs = runs_for_tables(specs, int(config.get("seeds", 1)))
    imported = bool(config.get("metrics_dir"))  # tables render from metrics computed elsewhere: nothing else runs
    trained = [] if imported else runs
    figures = [] if imported else figure_entries(config, runs)
    families = {run.dataset for run in trained} | {entry["dataset"] for entry in figures}
    toy = {family for family in families if config["data"][family]["source"] == "toy"}
    test_dev = config["evaluate"].get("test_dev") and not imported
    return {
        "toy_data": 1 if toy else 0,  # one job writes both toy layouts
        "real_data": len(families - toy),
        "run_config": len(trained),
        "train": len(trained),
        "curves": len(trained),
        "evaluate": sum(len(eval_splits(specs, run)) for run in trained),
        "evaluate_test_dev": sum(run.dataset == "coco" for run in trained) if test_dev else 0,
        "match_stats": len(figures),
        "table": len(specs),
        "summary": 1,
        "all": 1,
    }


__all__ = ["Run", "dataset_location", "eval_splits", "figure_entries", "gpu_hours", "job_counts", "load_table_spec",
           "plan", "row_run", "runs_for_tables", "table_specs", "train_config"]
