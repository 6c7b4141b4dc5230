"""The pipeline itself: lint, the paper config's DAG, and the whole toy DAG run end to end (twice)."""

import re
import shutil
import zipfile
from pathlib import PurePosixPath

import pandas as pd
import pytest
import yaml

from conftest import REPO
from conftest import run_snakemake as _snakemake

pytestmark = pytest.mark.slow  # every test runs Snakemake; most of them on the whole toy pipeline


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_lint_is_clean():
    code, output = _snakemake("--lint")
    assert code == 0, output


def test_paper_dry_run_has_a_job_per_run_the_tables_need():
    code, output = _snakemake("-n", "--configfile", "config/paper.yaml")
    assert code == 0, output
    counts = _job_counts(output)
    # Tables 1-9 need 22 runs: Table 1's five SSD300 weightings; Table 2 adds FSSD300 x {none, scb} and RefineDet320
    # x {none, scb ARM, scb ARM+ODM}; Table 5 twelve COCO runs (six detectors x {none, scb}); Tables 3-4 and 6-9
    # reuse them. Each run is evaluated on one split, COCO runs also on test-dev; one figure per dataset x model
    # trained (3 VOC + 6 COCO) plus Fig. 1's augmented VOC SSD300; one show-matching figure per dataset x model x
    # recipe trained (the same 9 pairs). DSSD321 and DSSD513 train in two stages: 4 more runs (their first stages,
    # SSD321 / SSD513 on ResNet-101, with and without SCB), trained, not evaluated.
    assert counts == {
        "real_data": 2,
        "run_config": 26,
        "train": 26,
        "curves": 26,
        "evaluate": 22,
        "evaluate_test_dev": 12,
        "match_stats": 10,
        "show_matching": 9,
        "table": 9,
        "summary": 1,
        "all": 1,
        "total": 144,
    }


def test_a_given_configfile_replaces_the_toy_default(tmp_path):
    """Toy-only keys (the 512-px detectors' batch size 4) must not leak into the paper's runs."""
    run_yaml = tmp_path / "runs" / "coco-ssd512-none-s0" / "train.yaml"
    code, output = _snakemake(
        "--cores", "1", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}", "--", str(run_yaml)
    )
    assert code == 0, output[-3000:]
    values = yaml.safe_load(run_yaml.read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["train"]
    authors = paper["recipes"]["authors"]  # SSD512 trains by the paper's released code
    assert values["recipe"] == "authors" and values["batch_size"] == authors["all"]["batch_size"] == 64
    assert (values["max_iter"], values["lr_steps"]) == (authors["coco"]["max_iter"], authors["coco"]["lr_steps"])
    assert values["width"] == 1.0 and values["batch_norm"] is False


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("batch_sise", 8, "batch_sise"),
        ("lr", "1e-3", "'1e-3' is not of type 'number'"),  # YAML reads 1e-3 without a dot as text
        ("momentum", -0.5, "-0.5 is less than the minimum of 0"),
        ("batch_norm", "no", "'no' is not of type 'boolean'"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, key, value, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["defaults"][key] = value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, output = _snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0 and message in output and "['train']['defaults']" in output, output[-2000:]


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
    assert re.search(r"\| \*\*all\*\* \| \| \*\*\d+ / \d+\*\* \|", summary)
    # the headline first: SSD300 with and without the scale-balanced loss on the toy shapes, three seeds each
    headline = (results / "tables" / "shapes-ssd300.md").read_text().strip()
    assert summary.index(headline) < summary.index("## The paper's tables") < summary.index("| table1 |")
    assert "mean ± std over 3 seed(s)" in headline and "**Smoke runs**" in summary
    cells = pd.read_csv(results / "tables" / "shapes-ssd300.csv")
    assert set(cells["row"]) == {"none", "scb"} and (cells["seeds"] == 3).all()


def test_toy_pipeline_draws_figures_and_curves(toy_pipeline):
    results, config_file = toy_pipeline
    matching = sorted((results / "figures" / "matching").glob("*.png"))
    assert len(matching) == 11  # 3 VOC + 6 COCO + the headline's dataset x model pairs, and Fig. 1's augmented one
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in matching)
    stats = pd.read_csv(results / "figures" / "matching" / "voc-ssd300-trainval.csv")
    assert set(stats["bucket"]) == {"small", "medium", "large"} and (stats["matches"] >= 0).all()
    assert len(list((results / "figures" / "curves").glob("*.png"))) == 22 + 6  # Tables 1-9's runs, the headline's


def test_second_invocation_has_nothing_to_do(toy_pipeline):
    _, config_file = toy_pipeline
    code, output = _snakemake("--cores", "all", "--configfile", str(config_file))
    assert code == 0, output
    assert "Nothing to be done" in output


def test_report_gathers_tables_and_figures(toy_pipeline, tmp_path):
    _, config_file = toy_pipeline
    code, output = _snakemake("--configfile", str(config_file), "--report", str(tmp_path / "report.zip"))
    assert code == 0, output[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as report:
        names = {PurePosixPath(name).name for name in report.namelist()}
    results, _ = toy_pipeline
    expected = {f"table{n}.csv" for n in range(1, 10)} | {"shapes-ssd300.csv", "summary.md"}
    # 11 matching-statistics figures, 10 show-matching figures, 28 training curves
    expected |= {p.name for p in (results / "figures").rglob("*.png")}
    assert len(expected) == 11 + 11 + 10 + 28 and expected <= names, sorted(expected - names)
    assert "report.html" in names


def test_tables_render_from_imported_metrics_without_training(toy_pipeline, tmp_path):
    """Only the eval/ folders travel (as docs/cluster.md says); a run whose metrics were not copied reads "not run"."""
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
    assert counts["table"] == 10 and not {"train", "evaluate", "match_stats", "toy_data", "custom_data"} & set(counts)
    for number in range(5, 10):  # the COCO tables do not use the missing VOC run
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "elsewhere" / "tables" / f"table{number}.csv"),
            pd.read_csv(results / "tables" / f"table{number}.csv"),
        )
    rendered = pd.read_csv(tmp_path / "elsewhere" / "tables" / "table1.csv").set_index("row")
    local = pd.read_csv(results / "tables" / "table1.csv").set_index("row")
    assert pd.isna(rendered.loc["1", "mean"]) and rendered.loc["1", "seeds"] == 0  # the SSD300 + none row
    # the missing row's empty 'within' makes that column object-typed; the values must still agree
    pd.testing.assert_frame_equal(rendered.drop(index="1"), local.drop(index="1"), check_dtype=False)
    assert "not run" in (tmp_path / "elsewhere" / "tables" / "table1.md").read_text()


def test_plan_estimates_gpu_hours_per_table():
    code, output = _snakemake("plan", "-c1", "--configfile", "config/paper.yaml")
    assert code == 0, output
    # Table 1: five SSD300 runs by the authors recipe, 62,088 iterations x 64 images at SSD300's declared 610
    # images/s on an H200 = 5 x 1.809 GPU-hours
    assert "table1: 5 runs (5 new), 9.0 GPU-h for the new ones" in output
    assert re.search(
        r"total: 26 training runs, [\d.]+ GPU-h of training \(GPUs x hours\), \+ 4 run\(s\) without a measured rate; "
        r"with 1 GPU\(s\) per run "
        r"the longest run takes [\d.]+ h",
        output,
    )
    assert "ssd300 610" in output and "measured on 'h200'" in output
    assert "ssd321_resnet unknown" in output  # DSSD's first stages: no rate measured, none guessed


def test_a_wrong_site_file_is_named_with_its_keys_before_anything_runs(tmp_path):
    """profiles/slurm/site.yaml is checked against site.schema.yaml: a misspelt key, a missing one and nodes: 0."""
    site = yaml.safe_load((REPO / "profiles" / "slurm" / "site.yaml").read_text())
    site["partiton"] = site.pop("partition")
    site["train"]["nodes"] = 0
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    code, output = _snakemake(
        "--profile", "profiles/slurm", "-n", env={"SCBLOSS_SLURM_SITE": str(tmp_path / "site.yaml")}
    )
    assert code != 0
    line = next(line for line in output.splitlines() if "site.yaml:" in line)
    assert f"{tmp_path / 'site.yaml'}: " in line and "'partition' is a required property" in line
    assert "'partiton' was unexpected" in line and "train.nodes: 0 is less than the minimum of 1" in line


def test_a_schedule_that_cannot_work_stops_the_dry_run_naming_a_run(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["train"]["defaults"]["lr_steps"] = [8, 4]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, output = _snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0
    assert re.search(r"run \S+-s0 \(composed from the config's train block\): lr_steps: must be increasing", output)
