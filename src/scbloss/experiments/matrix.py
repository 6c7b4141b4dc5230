"""The run matrix: the distinct training runs the tables need, the splits each is evaluated on, the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..paths import eval_file
from .run_config import run_recipe, test_split, train_config, train_split


@dataclass(frozen=True, order=True)
class Run:
    dataset: str  # voc | coco (the family; toy or real data depends on the config)
    model: str
    weighting: str
    variant: str = ""
    seed: int = 0
    recipe: str = ""  # a table row's own recipe; empty: the one the config's train block gives the model

    @property
    def id(self) -> str:
        variant = f"-{self.variant}" if self.variant else ""
        recipe = f"-{self.recipe}" if self.recipe else ""
        return f"{self.dataset}-{self.model}-{self.weighting}{variant}{recipe}-s{self.seed}"

    @property
    def setting(self) -> Run:
        """The same run without its seed: what a table row refers to."""
        return Run(self.dataset, self.model, self.weighting, self.variant, 0, self.recipe)


def metrics_path(runs_dir: str | Path, run_id: str, split: str) -> str:
    """Where a run's evaluation on a split lives, under results/runs or an imported metrics_dir (same layout)."""
    return eval_file(runs_dir, run_id, split)


def row_run(spec: dict, row: dict, seed: int = 0) -> Run:
    run = row["run"]
    return Run(spec["dataset"], run["model"], run["weighting"], run.get("variant", ""), seed, run.get("recipe", ""))


def table_seeds(spec: dict, seeds: int) -> int:
    """The seeds a table's rows run: its own (a comparison's ``seeds``), else the config's ``seeds``."""
    return spec.get("seeds", seeds)


def runs_for_tables(specs: list[dict], seeds: int) -> list[Run]:
    """Distinct runs the tables need (each seed a run), in a stable order."""
    return sorted(
        {row_run(spec, row, seed) for spec in specs for row in spec["rows"] for seed in range(table_seeds(spec, seeds))}
    )


def earlier_stage(config: dict, run: Run) -> Run | None:
    """The run whose final model ``run`` starts from when the config trains its model in stages (``train.stages``:
    DSSD after SSD on ResNet-101): the same dataset, weighting, variant, seed and recipe; None otherwise."""
    stage = config["train"].get("stages", {}).get(run.model)
    if stage is None:
        return None
    return Run(run.dataset, stage["after"], run.weighting, run.variant, run.seed, run.recipe)


def with_earlier_stages(config: dict, runs) -> list[Run]:
    """``runs`` and every earlier stage they start from, in a stable order."""
    found = set(runs)
    pending = list(runs)
    while pending:
        earlier = earlier_stage(config, pending.pop())
        if earlier is not None and earlier not in found:
            found.add(earlier)
            pending.append(earlier)
    return sorted(found)


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
        # the anchors and augmentation of the recipe the config trains the model by
        entry = {**entry, "recipe": run_recipe(config, Run(entry["dataset"], entry["model"], "none"))}
        distinct.setdefault((entry["dataset"], entry["model"], entry["split"], entry["augment"]), entry)
    return list(distinct.values())


def show_matching_entries(config: dict, runs) -> list[dict]:
    """The figures of `scbloss show-matching`, with `figures.show_matching`: one per dataset x model x recipe of
    the runs, on the dataset's test split, labelled with scb's W(M) at the alpha and beta the config trains that
    model with; distinct, in order."""
    if not (config.get("figures") or {}).get("show_matching"):
        return []
    entries = {}
    for run in sorted(runs):
        recipe = run_recipe(config, run)
        if (run.dataset, run.model, recipe) in entries:
            continue
        values = train_config(config, Run(run.dataset, run.model, "scb", recipe=recipe))
        entries[run.dataset, run.model, recipe] = {
            "name": f"{run.dataset}-{run.model}-{recipe}",
            "dataset": run.dataset,
            "model": run.model,
            "recipe": recipe,
            "split": test_split(config, run.dataset),
            **{key: values[key] for key in ("alpha", "beta") if key in values},
        }
    return list(entries.values())


__all__ = [
    "Run",
    "eval_splits",
    "figure_entries",
    "metrics_path",
    "row_run",
    "runs_for_tables",
    "show_matching_entries",
    "table_seeds",
]
