"""The pipeline itself: lint, the paper config's DAG, and the whole toy DAG run end to end (twice)."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scbloss.models import MODELS

from conftest import REPO, run_snakemake as _snakemake


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_lint_is_clean():
    code, output = _snakemake("--lint")
    assert code == 0, output


def _expected_jobs(config_path: Path) -> dict[str, int]:
    """The job count the requested tables imply, derived here from the table files and the config."""
    config = yaml.safe_load(config_path.read_text())
    runs, evaluations = set(), set()
    for table in config["tables"]:
        spec = yaml.safe_load((REPO / "paper_tables" / f"{table}.yaml").read_text())
        for row in spec["rows"]:
            if row["run"]["model"] not in MODELS:
                continue
            for seed in range(config["seeds"]):
                key = (spec["dataset"], row["run"]["model"], row["run"]["weighting"], row["run"].get("variant"), seed)
                runs.add(key)
                evaluations.add((key, spec["split"]))
    coco_runs = sum(1 for r in runs if r[0] == "coco")
    figures = sum(1 for f in config["figures"]["match_stats"] if f["model"] in MODELS)
    real_data = sum(1 for family in ("voc", "coco") if config["data"][family]["source"] != "toy")
    return {
        "run_config": len(runs), "train": len(runs), "curves": len(runs), "evaluate": len(evaluations),
        "evaluate_test_dev": coco_runs if config["evaluate"]["test_dev"] else 0, "table": len(config["tables"]),
        "summary": 1, "match_stats": figures, "all": 1, "real_data": real_data,
        "toy_data": 1 if real_data < 2 else 0,
    }


def test_paper_dry_run_has_the_jobs_the_tables_imply():
    code, output = _snakemake("-n", "--configfile", "config/paper.yaml")
    assert code == 0, output
    expected = {k: v for k, v in _expected_jobs(REPO / "config" / "paper.yaml").items() if v}
    counts = _job_counts(output)
    assert counts.pop("total") == sum(expected.values())
    assert counts == expected


def test_bad_config_is_rejected_naming_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["defaults"]["batch_sise"] = 8
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, output = _snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0 and "batch_sise" in output


def test_toy_pipeline_renders_every_table_with_numbers(toy_pipeline):
    results, _ = toy_pipeline
    for number in range(1, 10):
        for suffix in ("md", "tex", "csv"):
            assert (results / "tables" / f"table{number}.{suffix}").stat().st_size > 0
        cells = pd.read_csv(results / "tables" / f"table{number}.csv")
        assert cells["paper"].notna().any()
        markdown = (results / "tables" / f"table{number}.md").read_text()
        assert "toy dataset" in markdown
        measured = cells[cells["static"].isna()]
        assert measured["mean"].notna().all(), measured[measured["mean"].isna()]  # every row computed
    table1 = pd.read_csv(results / "tables" / "table1.csv")
    assert table1["mean"].between(0, 100).all() and table1["delta"].notna().all()
    table3 = (results / "tables" / "table3.md").read_text()
    assert re.search(r"\d+\.\d\d \(\d+/\d+\) / 73\.06 \(377/516\)", table3)
    assert "not run" not in (results / "tables" / "table2.md").read_text()
    summary = (results / "tables" / "summary.md").read_text()
    assert re.search(r"\| \*\*all\*\* \| \*\*\d+ / \d+\*\* \|", summary)


def test_toy_pipeline_draws_figures_and_curves(toy_pipeline):
    results, _ = toy_pipeline
    matching = sorted((results / "figures" / "matching").glob("*.png"))
    assert len(matching) == 7 and all(p.read_bytes()[:4] == b"\x89PNG" for p in matching)
    stats = pd.read_csv(results / "figures" / "matching" / "voc-ssd300-trainval.csv")
    assert set(stats["bucket"]) == {"small", "medium", "large"} and (stats["matches"] >= 0).all()
    assert len(list((results / "figures" / "curves").glob("*.png"))) == 22  # every run of Tables 1-9


def test_second_invocation_has_nothing_to_do(toy_pipeline):
    _, config_file = toy_pipeline
    code, output = _snakemake("--cores", "all", "--configfile", str(config_file))
    assert code == 0, output
    assert "Nothing to be done" in output


def test_report_gathers_tables_and_figures(toy_pipeline, tmp_path):
    _, config_file = toy_pipeline
    code, output = _snakemake("--configfile", str(config_file), "--report", str(tmp_path / "report.zip"))
    assert code == 0, output[-3000:]
    assert (tmp_path / "report.zip").stat().st_size > 10_000


def test_tables_render_from_imported_metrics_without_training(toy_pipeline, tmp_path):
    results, config_file = toy_pipeline
    config = yaml.safe_load(config_file.read_text())
    config["results"] = str(tmp_path / "elsewhere")
    config["metrics_dir"] = str(results / "runs")
    config["figures"] = {"match_stats": []}
    (tmp_path / "import.yaml").write_text(yaml.safe_dump(config))
    code, output = _snakemake("--cores", "1", "--configfile", str(tmp_path / "import.yaml"))
    assert code == 0, output[-3000:]
    counts = _job_counts(output)
    assert "train" not in counts and "evaluate" not in counts and counts["table"] == 9
    for number in range(1, 10):
        imported = pd.read_csv(tmp_path / "elsewhere" / "tables" / f"table{number}.csv")
        pd.testing.assert_frame_equal(imported, pd.read_csv(results / "tables" / f"table{number}.csv"))


def test_plan_estimates_gpu_hours_per_table():
    code, output = _snakemake("plan", "-c1", "--configfile", "config/paper.yaml")
    assert code == 0, output
    # Table 1: five SSD300 runs of 120k iterations x 32 images at 160 images/s = 5 x 6.67 GPU-hours
    assert "table1: 5 runs (5 new), 33.3 GPU-h for the new ones" in output
    assert re.search(r"total: 22 training jobs, 34 evaluation jobs, [\d.]+ GPU-h of training", output)
