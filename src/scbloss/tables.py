"""Rendering the paper's tables: reproduced values beside the transcribed ones, with the difference and a mark."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import jinja2
import pandas as pd

from .atomic import write_text
from .experiments import metrics_path, row_run

NOT_RUN = "not run"


def _read_metrics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a metrics JSON file ({error})") from error


def _value(metrics: dict, spec: dict, row: dict, key: str) -> tuple[float, str]:
    """One reproduced number (and, for VOC recall, 'hits/total') of a row's column from a metrics.json."""
    kind = spec["kind"]
    if kind == "voc_map":
        return metrics["voc_map"], ""
    if kind == "coco":
        return metrics["coco"][key], ""
    entry = next(e for e in metrics["recall"] if e["bucket"] == key and math.isclose(e["threshold"], row["threshold"]))
    return entry["recall"], f"{entry['hits']}/{entry['total']}"


def table_cells(spec: dict, runs_dir: Path, seeds: int) -> list[dict]:
    """Long-form cells: table, row, column, reproduced mean/std over seeds (None when not run), paper, tolerance."""
    cells = []
    means: dict[tuple[str, str], float] = {}
    for row in spec["rows"]:
        found = [
            _read_metrics(Path(metrics_path(runs_dir, row_run(spec, row, seed).id, spec["split"])))
            for seed in range(seeds)
        ]
        found = [m for m in found if m is not None]
        # metrics written before recipes existed are the original recipe's
        recipe = ", ".join(sorted({m.get("recipe", "original") for m in found}))
        for column in spec["columns"]:
            key = column["key"]
            paper = row.get("paper", {}).get(key)
            paper_percent = paper.get("percent") if isinstance(paper, dict) else paper
            cell = {
                "table": spec["id"],
                "row": row["label"],
                "recipe": recipe,
                "column": key,
                "paper": paper_percent,
                "paper_counts": f"{paper['hits']}/{paper['total']}"
                if isinstance(paper, dict) and "hits" in paper
                else "",
                "tolerance": row.get("tolerance", spec.get("tolerance")),
                "seeds": len(found),
                "mean": None,
                "std": None,
                "counts": "",
                "static": None,
            }
            if column.get("static"):
                cell["static"] = row.get("static", {}).get(key, "")
            elif column.get("improvement_of") and not row.get("baseline"):
                cell["static"] = "-"  # a baseline row improves on nothing
            elif column.get("improvement_of"):
                base = means.get((row.get("baseline", ""), column["improvement_of"]))
                own = means.get((row["label"], column["improvement_of"]))
                if base is not None and own is not None:
                    cell["mean"] = own - base
            elif found:
                values = [_value(m, spec, row, key) for m in found]
                numbers = [v for v, _ in values]
                cell["mean"] = statistics.fmean(numbers)
                cell["std"] = statistics.stdev(numbers) if len(numbers) > 1 else None
                cell["counts"] = values[0][1] if len(values) == 1 else ""
                means[(row["label"], key)] = cell["mean"]
            if cell["mean"] is not None and paper_percent is not None:
                cell["delta"] = cell["mean"] - paper_percent
                cell["within"] = abs(cell["delta"]) <= cell["tolerance"]
            else:
                cell["delta"], cell["within"] = None, None
            cells.append(cell)
    return cells


def _number(value: float, decimals: int, sign: str = "") -> str:
    """A rounded number; what rounds to zero prints as 0.0, never -0.0 (adding +0.0 clears the sign of -0.0)."""
    return f"{round(value, decimals) + 0.0:{sign}.{decimals}f}"


def _format_cell(cell: dict, decimals: int) -> dict:
    if cell["static"] is not None:
        return {"reproduced": str(cell["static"]), "paper": "", "delta": "", "mark": ""}
    if cell["mean"] is None:
        reproduced = NOT_RUN
    else:
        reproduced = _number(cell["mean"], decimals)
        if cell["std"] is not None:
            reproduced += f" ± {_number(cell['std'], decimals)}"
        if cell["counts"]:
            reproduced += f" ({cell['counts']})"
    paper = "" if cell["paper"] is None else _number(cell["paper"], decimals)
    if cell["paper_counts"]:
        paper += f" ({cell['paper_counts']})"
    delta = "" if cell["delta"] is None else _number(cell["delta"], decimals, "+")
    mark = {True: "yes", False: "no", None: ""}[cell["within"]]
    return {"reproduced": reproduced, "paper": paper, "delta": delta, "mark": mark}


def render_table(spec: dict, cells: list[dict], templates: Path, toy: bool) -> dict[str, str]:
    """Markdown and LaTeX text of a table from its cells, through the Jinja templates."""
    decimals = 2 if spec["kind"] == "recall" else 1
    by_row, recipes = {}, {}
    for cell in cells:
        by_row.setdefault(cell["row"], []).append(_format_cell(cell, decimals))
        recipes[cell["row"]] = cell.get("recipe") or ""
    compared = [c for c in cells if c["within"] is not None]
    context = {
        "spec": spec,
        "columns": spec["columns"],
        "rows": [{"label": label, "recipe": recipes[label], "cells": row} for label, row in by_row.items()],
        "toy": toy,
        "within": sum(c["within"] for c in compared),
        "compared": len(compared),
        "not_run": sorted({c["row"] for c in cells if c["mean"] is None and c["static"] is None}),
    }
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    environment.filters["tex"] = lambda text: str(text).replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$")
    return {suffix: environment.get_template(f"table.{suffix}.j2").render(**context) for suffix in ("md", "tex")}


def render(spec: dict, runs_dir: Path, seeds: int, out_dir: Path, templates: Path, toy: bool) -> list[dict]:
    """Write <id>.md, <id>.tex and <id>.csv (the long-form cells) into ``out_dir``; return the cells."""
    cells = table_cells(spec, runs_dir, seeds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in render_table(spec, cells, templates, toy).items():
        write_text(out_dir / f"{spec['id']}.{suffix}", text)
    write_text(out_dir / f"{spec['id']}.csv", pd.DataFrame(cells).to_csv(index=False))
    return cells


def summary(csv_files: list[Path], toy: bool, comparisons: list[Path] = ()) -> str:
    """Markdown: the comparison tables first (``comparisons``, rendered Markdown: the toy run's headline), then per
    paper table and overall, cells within tolerance / cells compared, and rows not run."""
    frames = [pd.read_csv(path) for path in csv_files]
    lines = ["# Reproduction summary", ""]
    for path in comparisons:
        lines += [Path(path).read_text().strip(), ""]
    if comparisons:
        lines += ["## The paper's tables", ""]
    if toy:
        lines += [
            "**Smoke runs**: the paper's tables reproduced on the generated toy dataset, each detector trained only "
            "long enough for every job of the DAG to run. Their numbers mean nothing; the paper's are shown for "
            "reference and are not expected to match, and nothing fails on a difference."
            + (" The comparison above is the toy run's result." if comparisons else ""),
            "",
        ]
    lines += [
        "| table | recipe (rows) | within tolerance / compared | cells not run |",
        "|---|---|---|---|",
    ]
    total_within = total_compared = 0
    for frame in frames:
        compared = frame[frame["within"].notna()]
        within = int(compared["within"].astype(bool).sum())
        not_run = int((frame["mean"].isna() & frame["static"].isna()).sum())
        total_within, total_compared = total_within + within, total_compared + len(compared)
        rows = frame.drop_duplicates("row")
        ran = rows["recipe"].astype(object).fillna("").astype(str) if "recipe" in rows else pd.Series(dtype=str)
        recipes = ", ".join(f"{name} ({count})" for name, count in ran[ran != ""].value_counts().sort_index().items())
        lines.append(f"| {frame['table'].iloc[0]} | {recipes or '-'} | {within} / {len(compared)} | {not_run} |")
    lines.append(f"| **all** | | **{total_within} / {total_compared}** | |")
    return "\n".join(lines) + "\n"


__all__ = ["NOT_RUN", "render", "render_table", "summary", "table_cells"]
