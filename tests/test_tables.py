import json
from pathlib import Path

import pandas as pd
import pytest

from scbloss.experiments import Run, load_table_spec, metrics_path, runs_for_tables, train_config
from scbloss.tables import render, summary

REPO_TABLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "paper_tables"


def _write_metrics(runs_dir, run, split, metrics):
    path = Path(metrics_path(runs_dir, run.id, split))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))


def test_voc_table_mean_std_delta_and_tolerance(tmp_path):
    spec = load_table_spec(REPO_TABLES / "table2.yaml")
    for seed, value in enumerate([78.0, 78.4]):
        metrics = {"voc_map": value, "recipe": "authors"}
        _write_metrics(tmp_path, Run("voc", "ssd300", "scb", "", seed), "test", metrics)
    _write_metrics(tmp_path, Run("voc", "ssd300", "none", "", 0), "test", {"voc_map": 77.0})
    _write_metrics(tmp_path, Run("voc", "ssd300", "none", "", 1), "test", {"voc_map": 77.4})
    cells = pd.DataFrame(render(spec, tmp_path, 2, tmp_path / "out", REPO_TABLES / "templates", toy=False))
    scb = cells[(cells["row"] == "SSD300 w/ scb loss") & (cells["column"] == "voc_map")].iloc[0]
    assert scb["mean"] == pytest.approx(78.2) and scb["std"] == pytest.approx(0.28284, abs=1e-4)
    assert scb["delta"] == pytest.approx(0.0) and scb["within"]
    improvement = cells[(cells["row"] == "SSD300 w/ scb loss") & (cells["column"] == "improvement")].iloc[0]
    assert improvement["mean"] == pytest.approx(1.0) and improvement["within"]
    markdown = (tmp_path / "out" / "table2.md").read_text()
    assert "| SSD300 w/ scb loss | authors | 1 | 3 | 78.2 ± 0.3 / 78.2 (+0.0 ✓) | 1.0 / 1.0 (+0.0 ✓) |" in markdown
    assert "| SSD300 | original | - | - | 77.2 ± 0.3 / 77.2 (+0.0 ✓) | - |" in markdown  # metrics without a recipe
    assert "| FSSD300 | - | - | - | not run / 78.8 | - |" in markdown
    assert "toy dataset" not in markdown
    assert "rows without the scale-balanced loss are the numbers the detector papers published" in markdown
    assert r"78.2 $\pm$ 0.3 / 78.2 (+0.0\checkmark)" in (tmp_path / "out" / "table2.tex").read_text()


def test_a_difference_that_rounds_to_zero_prints_without_a_sign(tmp_path):
    spec = load_table_spec(REPO_TABLES / "table2.yaml")
    _write_metrics(tmp_path, Run("voc", "ssd300", "none", "", 0), "test", {"voc_map": 77.24})
    _write_metrics(tmp_path, Run("voc", "ssd300", "scb", "", 0), "test", {"voc_map": 77.2})
    render(spec, tmp_path, 1, tmp_path / "out", REPO_TABLES / "templates", toy=False)
    markdown = (tmp_path / "out" / "table2.md").read_text()
    # improvement 77.2 - 77.24 = -0.04 -> "0.0"; its difference to the paper's 1.0 -> "-1.0"
    assert "| SSD300 w/ scb loss | original | 1 | 3 | 77.2 / 78.2 (-1.0 ✗) | 0.0 / 1.0 (-1.0 ✗) |" in markdown


def test_recall_table_counts_and_summary(tmp_path):
    spec = load_table_spec(REPO_TABLES / "table3.yaml")
    recall = [
        {"threshold": t, "bucket": b, "hits": h, "total": n, "recall": round(100 * h / n, 2)}
        for t in (0.01, 0.1, 0.3)
        for b, h, n in (("small", 370, 516), ("medium", 3500, 3813), ("large", 7000, 7703))
    ]
    _write_metrics(tmp_path, Run("voc", "ssd300", "none", "", 0), "test", {"recall": recall})
    render(spec, tmp_path, 1, tmp_path / "out", REPO_TABLES / "templates", toy=True)
    markdown = (tmp_path / "out" / "table3.md").read_text()
    assert "| SSD300, 0.01 | original | 71.71 (370/516) / 73.06 (377/516) (-1.35 ✓) |" in markdown
    assert "toy dataset" in markdown and "Recall counts detections down to the lowest threshold, 0.01" in markdown
    text = summary([tmp_path / "out" / "table3.csv"], toy=True)
    # the same recall at every threshold against the baseline rows: at 0.01 small 71.71 vs 73.06 and medium 91.79 vs
    # 92.29 are within 1.5, large 90.87 vs 96.57 is not; at 0.1 only large (vs 91.89); at 0.3 none (large vs 87.90)
    assert "| table3 | original (3) | 3 / 9 | 9 |" in text and "toy dataset" in text  # 3 SSD300 rows ran


def test_runs_are_shared_between_tables_and_configs_inherit():
    specs = [load_table_spec(REPO_TABLES / f"table{n}.yaml") for n in (1, 3, 6)]
    runs = runs_for_tables(specs, seeds=2)
    assert len(runs) == 2 * (5 + 2)  # Table 3 reuses Table 1's runs; Table 6 adds COCO SSD300 none/scb
    config = {
        "data": {"voc": {"source": "toy", "root": "t"}, "coco": {"source": "download", "root": "d"}},
        "train": {
            "defaults": {"lr": 1.0, "max_iter": 5},
            "coco": {"max_iter": 9},
            "models": {"ssd512": {"all": {"lr": 2.0}, "coco": {"batch_size": 4}}},
        },
    }
    values = train_config(config, Run("coco", "ssd512", "scb", "", 1))
    assert values == {
        "lr": 2.0,
        "max_iter": 9,
        "batch_size": 4,
        "model": "ssd512",
        "weighting": "scb",
        "seed": 1,
        "recipe": "original",
        "dataset": {"kind": "coco", "root": "d/coco", "split": "train"},
    }
    # a recipe's layer goes over the model's, for every run trained by it; a row's own recipe wins
    config["train"]["models"]["ssd512"]["all"]["recipe"] = "authors"
    config["train"]["recipes"] = {"authors": {"all": {"lr": 3.0}, "coco": {"max_iter": 7}}}
    values = train_config(config, Run("coco", "ssd512", "scb", "", 1))
    assert (values["recipe"], values["lr"], values["max_iter"], values["batch_size"]) == ("authors", 3.0, 7, 4)
    values = train_config(config, Run("coco", "ssd512", "scb", "", 1, recipe="original"))
    assert (values["recipe"], values["lr"], values["max_iter"]) == ("original", 2.0, 9)
    assert Run("coco", "ssd512", "scb", "", 1, recipe="original").id == "coco-ssd512-scb-original-s1"
    assert train_config(config, Run("voc", "ssd300", "none"))["dataset"] == {
        "kind": "toy_voc",
        "root": "t",
        "split": "trainval",
    }


def test_a_comparison_table_names_the_recipe_its_runs_trained_by(tmp_path):
    from scbloss.comparison import render_comparison

    spec = {
        "id": "mine-ssd300",
        "title": "ssd300 on mine",
        "kind": "comparison",
        "dataset": "mine",
        "split": "test",
        "baseline": "none",
        "columns": [{"key": "voc_map", "label": "voc_map"}],
        "rows": [{"label": w, "run": {"model": "ssd300", "weighting": w}} for w in ("none", "scb")],
    }
    for weighting, value in (("none", 70.0), ("scb", 72.5)):
        metrics = {"voc_map": value, "recipe": "authors"}
        _write_metrics(tmp_path, Run("mine", "ssd300", weighting, "", 0), "test", metrics)
    cells = render_comparison(spec, tmp_path, 1, tmp_path / "out", REPO_TABLES / "templates")
    assert {c["recipe"] for c in cells} == {"authors"}
    assert "trained and tested by the authors recipe" in (tmp_path / "out" / "mine-ssd300.md").read_text()
    assert "(recipe: authors)" in (tmp_path / "out" / "mine-ssd300.tex").read_text()


def test_the_summary_opens_with_the_comparisons_and_labels_the_smoke_tables(tmp_path):
    spec = load_table_spec(REPO_TABLES / "table1.yaml")
    render(spec, tmp_path, 1, tmp_path / "out", REPO_TABLES / "templates", toy=True)
    headline = tmp_path / "shapes-ssd300.md"
    headline.write_text("## ssd300 on shapes: the scale-balanced loss against the unweighted one\n\n| a |\n")
    text = summary([tmp_path / "out" / "table1.csv"], toy=True, comparisons=[headline])
    assert text.index("## ssd300 on shapes") < text.index("## The paper's tables") < text.index("| table1 |")
    assert "**Smoke runs**" in text and "The comparison above is the toy run's result." in text
    assert "**Smoke run**" in (tmp_path / "out" / "table1.md").read_text()
    assert "## The paper's tables" not in summary([tmp_path / "out" / "table1.csv"], toy=False)
