"""Shared fixtures."""

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


def run_snakemake(*args, timeout=3000):
    """Snakemake from this interpreter in the repository root: (exit code, stdout + stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="session")
def toy_pipeline(tmp_path_factory):
    """The default (toy) config, its outputs redirected to a temporary folder, run to the end on this machine."""
    folder = tmp_path_factory.mktemp("pipeline")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["results"] = str(folder / "results")
    for family in ("voc", "coco"):
        config["data"][family]["root"] = str(folder / "results" / "data" / "toy")
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    code, output = run_snakemake("--cores", "all", "--configfile", str(config_file))
    assert code == 0, output[-5000:]
    return folder / "results", config_file
