"""The pipeline itself: lint, the paper config's DAG, and the whole toy DAG run end to end (twice)."""

import re
import shutil
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
    train_split = {"voc": "trainval", "coco": "train"}
    figures = {(f["dataset"], f["model"], f["split"], f.get("augment", False))
               for f in config["figures"]["match_stats"] if f["model"] in MODELS}
    if config["figures"].get("every_trained_model"):
        figures |= {(run[0], run[1], train_split[run[0]], False) for run in runs}
    real_data = sum(1 for family in ("voc", "coco") if config["data"][family]["source"] != "toy")
    return {
        "run_config": len(runs), "train": len(runs), "curves": len(runs), "evaluate": len(evaluations),
        "evaluate_test_dev": coco_runs if config["evaluate"]["test_dev"] else 0, "table": len(config["tables"]),
        "summary": 1, "match_stats": len(figures), "all": 1, "real_data": real_data,
        "toy_data": 1 if real_data < 2 else 0,
    }


def test_paper_dry_run_has_the_jobs_the_tables_imply():
    code, output = _snakemake("-n", "--configfile", "config/paper.yaml")
    assert code == 0, output
    expected = {k: v for k, v in _expected_jobs(REPO / "config" / "paper.yaml").items() if v}
    counts = _job_counts(output)
    assert counts.pop("total") == sum(expected.values())
    assert counts == expected


def test_a_given_configfile_replaces_the_toy_default(tmp_path):
    """Toy-only keys (the 512-px detectors' batch size 4) must not leak into the paper's runs."""
    run_yaml = tmp_path / "runs" / "coco-ssd512-none-s0" / "train.yaml"
    code, output = _snakemake("--cores", "1", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}",
                              "--", str(run_yaml))
    assert code == 0, output[-3000:]
    values = yaml.safe_load(run_yaml.read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["train"]
    assert values["batch_size"] == paper["defaults"]["batch_size"] == 32
    assert (values["max_iter"], values["lr_steps"]) == (paper["coco"]["max_iter"], paper["coco"]["lr_steps"])
    assert values["width"] == 1.0 and values["batch_norm"] is False


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
    results, config_file = toy_pipeline
    matching = sorted((results / "figures" / "matching").glob("*.png"))
    assert len(matching) == _expected_jobs(config_file)["match_stats"] == 10
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in matching)
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
    """Only the eval/ folders travel (as the README says); a run whose metrics were not copied reads "not run"."""
    results, config_file = toy_pipeline
    imported = tmp_path / "from-cluster"
    for eval_dir in (results / "runs").glob("*/eval"):
        if eval_dir.parent.name != "voc-ssd300-none-s0":
            shutil.copytree(eval_dir, imported / eval_dir.parent.name / "eval")
    config = yaml.safe_load(config_file.read_text())
    config["results"] = str(tmp_path / "elsewhere")
    config["metrics_dir"] = str(imported)
    (tmp_path / "import.yaml").write_text(yaml.safe_dump(config))
    code, output = _snakemake("--cores", "1", "--configfile", str(tmp_path / "import.yaml"))
    assert code == 0, output[-3000:]
    counts = _job_counts(output)
    assert counts["table"] == 9 and not {"train", "evaluate", "match_stats", "toy_data"} & set(counts)
    for number in range(5, 10):  # the COCO tables do not use the missing VOC run
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "elsewhere" / "tables" / f"table{number}.csv"),
                                      pd.read_csv(results / "tables" / f"table{number}.csv"))
    rendered = pd.read_csv(tmp_path / "elsewhere" / "tables" / "table1.csv").set_index("row")
    local = pd.read_csv(results / "tables" / "table1.csv").set_index("row")
    assert pd.isna(rendered.loc["1", "mean"]) and rendered.loc["1", "seeds"] == 0  # the SSD300 + none row
    # the missing row's empty 'within' makes that column object-typed; the values must still agree
    pd.testing.assert_frame_equal(rendered.drop(index="1"), local.drop(index="1"), check_dtype=False)
    assert "not run" in (tmp_path / "elsewhere" / "tables" / "table1.md").read_text()



def test_plan_estimates_gpu_hours_per_table():
    code, output = _snakemake("plan", "-c1", "--configfile", "config/paper.yaml")
    assert code == 0, output
    # Table 1: five SSD300 runs of 120k iterations x 32 images at 160 images/s = 5 x 6.67 GPU-hours
    assert "table1: 5 runs (5 new), 33.3 GPU-h for the new ones" in output
    assert re.search(r"total: 22 training jobs, 34 evaluation jobs, [\d.]+ GPU-h of training", output)


@pytest.mark.parametrize("configfile", ["config/paper.yaml", "config/config.yaml"])
def test_plan_counts_the_jobs_the_dag_runs(configfile, tmp_path):
    config = yaml.safe_load((REPO / configfile).read_text())
    config["results"] = str(tmp_path / "results")  # nothing exists there yet: every job is due
    for source in config["data"].values():
        if source["source"] == "toy":
            source["root"] = str(tmp_path / "results" / "data" / "toy")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, planned = _snakemake("plan", "-c1", "--configfile", str(tmp_path / "config.yaml"))
    assert code == 0, planned
    code, dry_run = _snakemake("-n", "--configfile", str(tmp_path / "config.yaml"))
    assert code == 0, dry_run
    counts = _job_counts(dry_run)
    total = counts.pop("total")
    listed = re.search(r"^jobs: (\d+) in all \((.+)\)$", planned, re.MULTILINE)
    assert int(listed.group(1)) == total
    assert {rule: int(n) for rule, n in (item.split() for item in listed.group(2).split(", "))} == counts

