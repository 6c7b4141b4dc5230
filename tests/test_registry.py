"""The detector registry: declarations, names checked where they are used, and an eighth detector that takes one
module plus table rows."""

import os
import subprocess
import sys

import pytest
import yaml

from scbloss import detectors
from scbloss.experiments import TableSpecError, load_table_spec

from conftest import REPO, run_snakemake

EXTRA = REPO / "tests" / "extra_detector.py"
SCHEMA = REPO / "workflow" / "schemas" / "table.schema.yaml"


def test_every_builtin_declares_a_layout_per_family_and_its_measured_rates():
    paper = ("ssd300", "ssd512", "fssd300", "fssd512", "dssd321", "dssd513", "refinedet320")
    first_stages = ("ssd321_resnet", "ssd513_resnet")  # DSSD's, declared beside it; no rate measured yet
    assert set(detectors.names()[:9]) == set(paper + first_stages)
    for name in paper:
        spec = detectors.get(name)
        assert set(spec.layouts) == {"voc", "coco"} and set(spec.throughput) == {"h200", "cpu"}
        assert all(rate.images_per_s > 0 and rate.measured for rate in spec.throughput.values())
    # the prior counts of the papers, from the declared layouts alone
    counts = {name: detectors.get(name).layout("coco").num_priors() for name in paper + first_stages}
    assert counts == {
        "ssd300": 8732,
        "ssd512": 24564,
        "fssd300": 8732,  # Caffe FSSD's COCO layout; PytorchSSD's on VOC, below
        "fssd512": 24564,
        "dssd321": 18312,
        "dssd513": 45752,
        "refinedet320": 6375,
        "ssd321_resnet": 18312,  # DSSD's own priors: stage 2 keeps what stage 1 learned to predict from
        "ssd513_resnet": 45752,
    }
    assert [detectors.get(name).layout("voc").num_priors() for name in ("fssd300", "fssd512")] == [11620, 32756]
    with pytest.raises(ValueError, match="unknown model 'yolo'; choose one of ssd300, ssd512"):
        detectors.get("yolo")


def test_the_workflow_modules_import_no_torch():
    code = "import sys, scbloss.experiments, scbloss.pipeline, scbloss.detectors; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _tables_with_extra_rows(folder):
    """The paper's tables plus one with the extra detector's two runs."""
    tables = folder / "tables"
    (tables / "templates").mkdir(parents=True)
    for source in (REPO / "paper_tables").rglob("*"):
        if source.is_file():
            (tables / source.relative_to(REPO / "paper_tables")).write_bytes(source.read_bytes())
    spec = yaml.safe_load((REPO / "paper_tables" / "table1.yaml").read_text())
    spec.update(
        id="tiny",
        rows=[
            {"label": "tiny", "run": {"model": "tiny128", "weighting": "none"}},
            {"label": "tiny + scb", "run": {"model": "tiny128", "weighting": "scb"}},
        ],
    )
    (tables / "tiny.yaml").write_text(yaml.safe_dump(spec))
    return tables


@pytest.mark.slow
def test_an_eighth_detector_is_one_module_plus_table_rows(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config.update(
        tables=config["tables"] + ["tiny"],
        tables_dir=str(_tables_with_extra_rows(tmp_path)),
        detector_modules=[str(EXTRA)],
        results=str(tmp_path / "results"),
    )
    # it declares no pretrained backbone: the paper config's VGG16 is not for it (the dry-run names the run if kept)
    config["train"].setdefault("models", {})["tiny128"] = {"all": {"pretrained_backbone": None}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, output = run_snakemake("-n", "--configfile", str(tmp_path / "config.yaml"))
    assert code == 0, output[-3000:]
    stats = output[output.index("Job stats:") :]
    # the paper's 26 runs (Tables 1-9, DSSD's first stages) and the two of the extra table; a matching figure for
    # its dataset x model
    assert "train                   28" in stats and "match_stats             11" in stats
    assert "voc-tiny128-scb-s0" in output and "voc-tiny128-none-s0" in output


@pytest.mark.slow
def test_the_extra_detector_trains_end_to_end(tmp_path):
    from scbloss.data.toy import ToyConfig, generate_toy

    toy = generate_toy(tmp_path / "toy", ToyConfig(train_images=8, test_images=4, seed=3))
    config = {
        "model": "tiny128",
        "width": 0.25,
        "dataset": {"kind": "toy_voc", "root": str(toy), "split": "trainval"},
        "batch_size": 2,
        "max_iter": 2,
        "lr_steps": [],
        "num_workers": 0,
        "weighting": "scb",
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, detectors.MODULES_ENV: str(EXTRA)}
    command = [
        sys.executable,
        "-m",
        "scbloss",
        "train",
        "--config",
        str(tmp_path / "run.yaml"),
        "--out",
        str(tmp_path / "run"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "model_final.pt").is_file()
    without = subprocess.run(
        command[:-1] + [str(tmp_path / "other")],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != detectors.MODULES_ENV},
    )
    assert without.returncode == 2 and "model: 'tiny128' is not one of ssd300" in without.stderr


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda row: row["run"].update(weighting="sbc"),
            r'table2.yaml: rows\[3\] \("SSD300 w/ scb loss"\): run.weighting \'sbc\' is not one of none, inv_log1p',
        ),
        (
            lambda row: row["run"].update(model="ssd301"),
            r'rows\[3\] \("SSD300 w/ scb loss"\): run.model \'ssd301\' is not a registered detector',
        ),
        (
            lambda row: row["run"].update(variant="odm"),
            r"rows\[3\] .*: run.variant: ssd300: no variant 'odm' \(it has no variants\)",
        ),
        (lambda row: row.update(paper={"voc_map": "78.2"}), r"rows\[3\] .*\.paper\.voc_map: '78.2' is not valid"),
        (lambda row: row.pop("run"), r"rows\[3\] \(\"SSD300 w/ scb loss\"\): 'run' is a required property"),
    ],
)
def test_a_wrong_table_row_is_named_with_its_file(tmp_path, change, message):
    spec = yaml.safe_load((REPO / "paper_tables" / "table2.yaml").read_text())
    change(spec["rows"][3])
    (tmp_path / "table2.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(TableSpecError, match=message):
        load_table_spec(tmp_path / "table2.yaml", SCHEMA)


@pytest.mark.slow
def test_a_misspelt_weighting_fails_the_dry_run(tmp_path):
    tables = _tables_with_extra_rows(tmp_path)
    spec = yaml.safe_load((tables / "table1.yaml").read_text())
    spec["rows"][2]["run"]["weighting"] = "inv_sqrd"
    (tables / "table1.yaml").write_text(yaml.safe_dump(spec))
    code, output = run_snakemake("-n", "--configfile", "config/paper.yaml", "--config", f"tables_dir={tables}")
    assert code != 0
    assert "table1.yaml: rows[2] (\"1/sqrt(M)\"): run.weighting 'inv_sqrd' is not one of" in output
