"""Each evaluation convention is defined once, in scbloss.conventions, and every part reads that definition."""

import inspect

import yaml

from scbloss import conventions
from scbloss.engine import coco_eval, evaluate, recall
from scbloss.experiments import comparison_specs

from conftest import REPO


def test_the_schema_default_thresholds_are_the_python_ones():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    default = schema["properties"]["evaluate"]["properties"]["thresholds"]["default"]
    assert tuple(default) == conventions.RECALL_THRESHOLDS


def test_the_shipped_configs_and_paper_tables_use_those_thresholds():
    for path in sorted((REPO / "config").glob("*.yaml")):
        thresholds = (yaml.safe_load(path.read_text()).get("evaluate") or {}).get("thresholds")
        assert thresholds is None or tuple(thresholds) == conventions.RECALL_THRESHOLDS, path.name
    for path in sorted((REPO / "paper_tables").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        thresholds = {row["threshold"] for row in spec["rows"] if "threshold" in row}
        assert thresholds <= set(conventions.RECALL_THRESHOLDS), path.name


def test_evaluation_reads_the_one_definition():
    assert coco_eval.COCO_STATS is conventions.COCO_STATS
    for function in (recall.size_recall, evaluate.evaluate):
        assert inspect.signature(function).parameters["thresholds"].default is conventions.RECALL_THRESHOLDS


def test_a_comparison_table_has_the_coco_stats_and_recall_by_size_at_each_threshold():
    config = {
        "data": {"coco": {"source": "toy", "root": "data/toy"}},
        "comparisons": [{"dataset": "coco", "models": ["ssd300"], "weightings": ["none", "scb"]}],
    }
    keys = [column["key"] for column in comparison_specs(config)[0]["columns"]]
    recall_keys = [f"{b}@{t}" for t in conventions.RECALL_THRESHOLDS for b in conventions.SIZE_BUCKETS]
    assert keys == conventions.COCO_STATS + recall_keys
