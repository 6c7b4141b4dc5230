"""The comparison table of one of your datasets: a row per weighting, mean and std over seeds, and each row's
difference to the unweighted one with a paired test over the seeds (runs of the same seed share their data order
and augmentation, so the pairs differ by the loss only)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import jinja2
import pandas as pd

from .atomic import write_text
from .experiments import metrics_path, row_run


def _value(metrics: dict, key: str) -> float:
    if key == "voc_map":
        return metrics["voc_map"]
    if "@" in key:
        bucket, threshold = key.split("@")
        entry = next(
            e for e in metrics["recall"] if e["bucket"] == bucket and math.isclose(e["threshold"], float(threshold))
        )
        return entry["recall"]
    return metrics["coco"][key]


def _paired_p(values: list[float], baseline: list[float]) -> float | None:
    """Two-sided paired t-test over seeds (None with fewer than two pairs, or when every pair differs equally)."""
    from scipy.stats import ttest_rel

    if len(values) < 2 or len({round(a - b, 12) for a, b in zip(values, baseline)}) < 2:
        return None
    return float(ttest_rel(values, baseline).pvalue)


def comparison_cells(spec: dict, runs_dir: Path, seeds: int) -> list[dict]:
    """Long-form cells: row, column, seeds found, mean, std, difference to the baseline row and its p-value."""
    per_row = {}
    for row in spec["rows"]:
        found = {}
        for seed in range(seeds):
            path = Path(metrics_path(runs_dir, row_run(spec, row, seed).id, spec["split"]))
            if path.is_file():
                found[seed] = json.loads(path.read_text())
        per_row[row["label"]] = found
    baseline = per_row[spec["baseline"]]
    cells = []
    for row in spec["rows"]:
        found = per_row[row["label"]]
        for column in spec["columns"]:
            values = {seed: _value(metrics, column["key"]) for seed, metrics in found.items()}
            cell = {
                "table": spec["id"],
                "row": row["label"],
                "recipe": ", ".join(sorted({m.get("recipe", "original") for m in found.values()})),
                "column": column["key"],
                "seeds": len(values),
                "mean": statistics.fmean(values.values()) if values else None,
                "std": statistics.stdev(values.values()) if len(values) > 1 else None,
                "difference": None,
                "p_value": None,
            }
            paired = sorted(set(values) & set(baseline))
            if row["label"] != spec["baseline"] and paired:
                ours = [values[s] for s in paired]
                theirs = [_value(baseline[s], column["key"]) for s in paired]
                cell["difference"] = statistics.fmean(ours) - statistics.fmean(theirs)
                cell["p_value"] = _paired_p(ours, theirs)
            cells.append(cell)
    return cells


def _text(cell: dict) -> dict:
    if cell["mean"] is None:
        return {"value": "not run", "difference": ""}
    value = f"{round(cell['mean'], 2) + 0.0:.2f}"
    if cell["std"] is not None:
        value += f" ± {round(cell['std'], 2) + 0.0:.2f}"
    difference = ""
    if cell["difference"] is not None:
        difference = f"{round(cell['difference'], 2) + 0.0:+.2f}"
        if cell["p_value"] is not None:
            difference += f" (p {cell['p_value']:.3f})"
    return {"value": value, "difference": difference}


def render_comparison(spec: dict, runs_dir: Path, seeds: int, out_dir: Path, templates: Path) -> list[dict]:
    """Write <id>.md, <id>.tex (templates comparison.*.j2) and <id>.csv into ``out_dir``; return the cells."""
    cells = comparison_cells(spec, runs_dir, seeds)
    rows = []
    for row in spec["rows"]:
        rows.append(
            {
                "label": row["label"],
                "baseline": row["label"] == spec["baseline"],
                "cells": [_text(c) for c in cells if c["row"] == row["label"]],
            }
        )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    environment.filters["tex"] = lambda text: str(text).replace("_", r"\_").replace("±", r"$\pm$")
    recipes = sorted({name for c in cells for name in c["recipe"].split(", ") if name})
    context = {"spec": spec, "columns": spec["columns"], "rows": rows, "seeds": seeds, "recipes": recipes}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("md", "tex"):
        text = environment.get_template(f"comparison.{suffix}.j2").render(**context)
        write_text(out_dir / f"{spec['id']}.{suffix}", text)
    write_text(out_dir / f"{spec['id']}.csv", pd.DataFrame(cells).to_csv(index=False))
    return cells


__all__ = ["comparison_cells", "render_comparison"]
