"""Run every benchmark and print measured ratios against their references and targets.

Usage: python benchmarks/run.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_detectors  # noqa: E402
import bench_input  # noqa: E402
import bench_loss  # noqa: E402

BENCHMARKS = {
    "scb vs none weighting, SSD300 train step (batch 8, CPU)": bench_loss.bench_weighting_overhead,
    "matching + loss vs torchvision SSD (batch 32, 8732 priors)": bench_loss.bench_against_torchvision,
    "worker CPU time per training image, device path vs torchvision v2 (VOC-sized JPEGs)": (
        bench_input.bench_worker_cpu_time
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter timing windows (noisier ratios)")
    parser.add_argument("--no-detectors", action="store_true", help="skip the per-detector step times (slow)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    missed = 0
    for title, bench in BENCHMARKS.items():
        result = bench(args.quick)
        ok = result["ratio"] <= result["target"]
        missed += not ok
        times = ", ".join(f"{k}={v:.4f}" for k, v in result.items() if k.endswith("_s"))
        print(
            f"{title}: ratio {result['ratio']:.3f} (target <= {result['target']}) {'OK' if ok else 'MISSED'}  [{times}]"
        )
    if not args.no_detectors:
        print("train step per detector (informational, no target):")
        for line in bench_detectors.bench_detector_steps(args.quick):
            print(f"  {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
