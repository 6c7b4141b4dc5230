"""The experiments package: the measured training rates it plans with come from the detectors' throughput.yaml."""

import importlib.resources

import yaml

from scbloss import detectors
from scbloss.experiments import training_rate


def _table() -> dict:
    return yaml.safe_load(importlib.resources.files("scbloss.detectors").joinpath("throughput.yaml").read_text())


def test_every_builtin_detector_has_a_rate_per_device_and_the_registry_returns_it():
    table = _table()
    builtins = ("ssd300", "ssd512", "fssd300", "fssd512", "dssd321", "dssd513", "refinedet320")  # the paper's
    assert set(table["rates"]) == set(builtins)
    for first_stage in ("ssd321_resnet", "ssd513_resnet"):  # not measured yet: `plan` counts their runs apart
        assert detectors.get(first_stage).throughput == {}
    for name in builtins:
        assert set(table["rates"][name]) == set(table["devices"]), name
        for device, entry in table["rates"][name].items():
            rate = entry["images_per_s"] if isinstance(entry, dict) else entry
            assert detectors.get(name).throughput[device].images_per_s == rate, (name, device)
            config = {"throughput": {}, "throughput_on": device}
            assert training_rate(config, name) == rate, (name, device)


def test_a_rate_carries_its_provenance_and_per_entry_differences():
    assert "batch 32, torch 2.11, 2026-11-26" in detectors.get("ssd300").throughput["h200"].measured
    assert "benchmarks/README.md" in detectors.get("ssd300").throughput["h200"].measured
    dssd513 = detectors.get("dssd513").throughput
    assert "model-only" in dssd513["h200"].measured and "batch 20" in dssd513["h200"].measured
    assert "batch 4" in dssd513["cpu"].measured and "batch 8" in detectors.get("ssd300").throughput["cpu"].measured


def test_a_row_naming_the_configs_own_recipe_is_the_same_run(tmp_path):
    """Rows choosing the recipe the config already trains the model by share its run; the other recipe is a run of
    its own, named after it."""
    import shutil

    from scbloss.experiments import runs_for_tables, table_specs

    from conftest import REPO

    tables = tmp_path / "tables"
    shutil.copytree(REPO / "paper_tables", tables)
    spec = yaml.safe_load((tables / "table1.yaml").read_text())
    spec["rows"] = [
        {"label": "a", "run": {"model": "ssd300", "weighting": "none"}},
        {"label": "b", "run": {"model": "ssd300", "weighting": "none", "recipe": "authors"}},
        {"label": "c", "run": {"model": "ssd300", "weighting": "none", "recipe": "original"}},
    ]
    (tables / "table1.yaml").write_text(yaml.safe_dump(spec))
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config.update(tables=["table1"], tables_dir=str(tables))
    runs = runs_for_tables(table_specs(config), seeds=1)
    assert [run.id for run in runs] == ["voc-ssd300-none-s0", "voc-ssd300-none-original-s0"]
