"""Shared fixtures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


def run_snakemake(*args, timeout=3000, env=None):
    """Snakemake from this interpreter in the repository root: (exit code, stdout + stderr); ``env`` adds to the
    environment."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


HEADLINE = "shapes"  # the default config's headline dataset: its comparison, its runs' training values


def toy_config(folder: Path, headline: bool = False, **changes) -> Path:
    """The default (toy) config with its outputs below ``folder`` and ``changes`` to its top-level keys: its path.
    Without ``headline`` the headline comparison (its dataset, comparison and training values) is left out: the
    tests that run a few toy runs through the DAG want those runs only."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(changes)
    config["results"] = str(folder / "results")
    for family, source in config["data"].items():
        source["root"] = str(folder / "results" / "data" / (family if family == HEADLINE else "toy"))
    if not headline:
        config["data"].pop(HEADLINE)
        config["train"].pop(HEADLINE, None)
        config["comparisons"] = [c for c in config.get("comparisons", []) if c["dataset"] != HEADLINE]
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def whole_dag_config(folder: Path) -> Path:
    """The default (toy) config's whole DAG, every table and figure, the headline comparison shortened: the smoke
    runs at 6 iterations on 32 images, the headline's three seeds at 6 iterations on 32 images too (the README's main
    command, at full size, is measured there; CI checks the DAG). Six iterations still go through warm-up, a
    learning-rate step, a checkpoint mid-run and two logged rows (a curve); nothing the DAG's tests check depends on
    how far the models train."""
    toy = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    train = toy["train"]
    train["defaults"].update(max_iter=6, lr_steps=[4], warmup_iters=2, checkpoint_every=3, log_every=3)
    train[HEADLINE] = {}  # the smoke schedule above
    data = toy["data"]
    data[HEADLINE]["toy"] = {**data[HEADLINE]["toy"], "train_images": 32, "test_images": 12}
    small = {**toy["toy"], "train_images": 32, "test_images": 12}
    return toy_config(folder, headline=True, toy=small, train=train, data=data)


@pytest.fixture(scope="session")
def toy_pipeline(tmp_path_factory):
    """The whole toy DAG (at CI size), its outputs in a temporary folder, run to the end on this machine."""
    folder = tmp_path_factory.mktemp("pipeline")
    config_file = whole_dag_config(folder)
    code, output = run_snakemake("--cores", "all", "--configfile", str(config_file))
    assert code == 0, output[-5000:]
    return folder / "results", config_file


def table1_config(folder: Path, weightings: tuple[str, ...], train: dict, **changes) -> Path:
    """A toy config whose only table is Table 1 cut to the SSD300 rows of ``weightings`` (one run each), with
    ``train`` over the training defaults."""
    tables = folder / "tables"
    (tables / "templates").mkdir(parents=True)
    spec = yaml.safe_load((REPO / "paper_tables" / "table1.yaml").read_text())
    spec["rows"] = [row for row in spec["rows"] if row["run"]["weighting"] in weightings]
    (tables / "table1.yaml").write_text(yaml.safe_dump(spec))
    for template in (REPO / "paper_tables" / "templates").iterdir():
        shutil.copy(template, tables / "templates" / template.name)
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    defaults["defaults"].update(train)
    return toy_config(folder, tables=["table1"], tables_dir=str(tables), train=defaults, **changes)


def reduced_config(folder: Path) -> Path:
    """The toy pipeline cut to one table of two runs (SSD300 unweighted and scale-balanced) of a few iterations on a
    small toy dataset, outputs below ``folder``: what the cluster and container tests run and compare."""
    toy = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["toy"]
    return table1_config(
        folder,
        ("none", "scb"),
        {"max_iter": 12, "lr_steps": [10], "warmup_iters": 2, "log_every": 2, "checkpoint_every": 6},
        toy={**toy, "train_images": 24, "test_images": 12},
        figures={"every_trained_model": False, "match_stats": []},
    )


def reduced_outputs(results: Path) -> dict[str, str]:
    """What a reduced run must reproduce elsewhere: its table and, per run, every logged loss and the evaluation
    (detections and metrics, the results folder's own path written as <results>)."""
    outputs = {"table1.csv": (results / "tables" / "table1.csv").read_text()}
    for run in sorted((results / "runs").iterdir()):
        rows = (run / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",")
        kept = [i for i, name in enumerate(header) if name != "images_per_s"]  # the one timing column
        outputs[f"{run.name}/metrics.csv"] = "\n".join(",".join(r.split(",")[i] for i in kept) for r in rows)
        for path in sorted((run / "eval").rglob("*.json")):
            outputs[str(path.relative_to(results / "runs"))] = path.read_text().replace(str(results), "<results>")
    return outputs


@pytest.fixture(scope="session")
def reduced_pipeline(tmp_path_factory):
    """The reduced pipeline run on this machine with `snakemake --cores 2`: its results folder."""
    folder = tmp_path_factory.mktemp("reduced")
    code, output = run_snakemake("--cores", "2", "--configfile", str(reduced_config(folder)))
    assert code == 0, output[-5000:]
    return folder / "results"
