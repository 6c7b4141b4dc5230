"""benchmarks/gpu.py's pure helpers: the bf16 peak by device name, the FLOP-bound fraction, the paper's plan at
measured rates. Its measurements need a GPU and are never timed here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu  # noqa: E402


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA H100 80GB HBM3", 989.4e12),  # the SXM5 part
        ("NVIDIA H100 SXM5 80GB", 989.4e12),
        ("NVIDIA H100 PCIe", None),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA A100-SXM4-80GB", None),
    ],
)
def test_the_bf16_peak_is_named_by_the_device_or_unknown(name, peak):
    assert gpu.bf16_peak_flops(name) == peak


def test_the_flop_bound_fraction():
    # 1,900 img/s x 210 GFLOP/img = 399 TFLOP/s; / 989.4 TFLOP/s = 0.40327...
    assert gpu.flop_bound_fraction(1900, 210e9, 989.4e12) == pytest.approx(399 / 989.4)
    assert gpu.flop_bound_fraction(1900, 210e9, None) is None
    assert gpu.flop_bound_fraction(None, 210e9, 989.4e12) is None


def test_schema_defaults_fill_missing_keys_through_refs_and_additional_properties():
    schema = {
        "definitions": {"inner": {"type": "object", "properties": {"a": {"default": 1}, "b": {"default": [2]}}}},
        "properties": {
            "x": {"$ref": "#/definitions/inner", "default": {}},
            "y": {"default": 3},
            "more": {"type": "object", "additionalProperties": {"$ref": "#/definitions/inner"}},
        },
    }
    config = gpu.with_schema_defaults({"y": 4, "more": {"k": {"a": 5}}}, schema)
    assert config == {"x": {"a": 1, "b": [2]}, "y": 4, "more": {"k": {"a": 5, "b": [2]}}}


def test_the_paper_plan_takes_measured_rates():
    # Table 1: five SSD300 runs of 62,088 iterations x 64 images; at 610 img/s (the registry's H200 rate) that is
    # 5 x 1.809 = 9.0 GPU-hours (as `snakemake plan` prints, test_workflow.py); at twice the rate, half
    assert "table1: 5 runs (5 new), 9.0 GPU-h" in gpu.paper_plan()
    halved = gpu.paper_plan({"ssd300": 1220})
    assert "table1: 5 runs (5 new), 4.5 GPU-h" in halved
    assert "ssd300 1220" in halved
