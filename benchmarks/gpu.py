"""Does the input pipeline keep the training device busy? One command, for every detector:

  model-only images/s        a train step on a synthetic batch (precision and compilation as `auto` resolves them)
  input CPU / device img/s   the training input pipeline alone, 8 workers: torchvision v2 in the workers (CPU path),
                             or bytes + draws in the workers and decode + augmentation on the device (device path)
  end-to-end img/s           `scbloss train` on VOC-sized JPEGs, from its metrics log, after the first rows
  ratio                      end-to-end / model-only (target on a GPU: >= 0.9 for every detector)
then SSD300 end to end against the old default (fp16 + GradScaler, eager, v2 in the workers; target >= 1.6x), and
the device's pixel half (`augment_batch`) against the same steps written with kornia, where kornia is installed.

Usage: python benchmarks/gpu.py [--device cuda|cpu] [--quick] [--detectors ssd300,...] [--images DIR]
On a CPU it runs at small sizes (width 0.125, batch 4) to check the machinery; the targets are for a GPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_input  # noqa: E402

from scbloss import detectors  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def end_to_end_images_per_s(
    name: str,
    root: Path,
    width: float,
    batch: int,
    iterations: int,
    workers: int,
    folder: Path,
    overrides: dict | None = None,
    tag: str = "",
) -> float:
    """`scbloss train` with the defaults (precision, compile, augment_on: auto) or ``overrides``: its logged
    images/s, the first fifth of the rows (workers starting, compilation) left out."""
    config = {
        "model": name,
        "width": width,
        "batch_norm": width < 1,
        "batch_size": batch,
        "max_iter": iterations,
        "lr_steps": [],
        "log_every": max(1, iterations // 10),
        "num_workers": workers,
        "lr": 1e-4,
        "checkpoint_every": iterations + 1,
        "dataset": {"kind": "toy_voc", "root": str(root)},
        **(overrides or {}),
    }
    name = name + tag
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scbloss",
            "train",
            "--config",
            str(folder / f"{name}.yaml"),
            "--out",
            str(folder / name),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with open(folder / name / "metrics.csv", newline="") as handle:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(handle)]
    kept = rates[max(1, len(rates) // 5) :] or rates
    return sum(kept) / len(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer steps and images (noisier)")
    parser.add_argument("--detectors", default=",".join(detectors.names()))
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (a paper training job's 8 cores)")
    parser.add_argument("--images", type=Path, help="a toy-layout folder of VOC-sized JPEGs to reuse")
    parser.add_argument("--no-old-default", action="store_true", help="skip SSD300 end to end with the old default")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    width, batch = (1.0, 32) if gpu else (0.125, 4)
    steps = (10 if args.quick else 30) if gpu else 2
    iterations = (60 if args.quick else 200) if gpu else 6
    workers = args.workers if gpu else min(args.workers, 2)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({os.cpu_count()} cores)"
    print(
        f"{name}, torch {torch.__version__}, {datetime.date.today()}, width {width}, batch {batch}, {workers} workers"
    )
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = args.images or bench_input.voc_sized_images(scratch / "voc-sized", 96 if gpu else 24)
        print(
            "| detector | precision | model-only img/s | input CPU path img/s | input device path img/s | "
            "end-to-end img/s | end-to-end / model-only |"
        )
        print("|---|---|---|---|---|---|---|")
        for detector in args.detectors.split(","):
            model_rate, precision = bench_input.model_images_per_s(detector, width, batch, steps, device)
            size = detectors.get(detector).layout("voc").image_size
            batches = 24 if gpu else 8
            cpu_path = bench_input.input_images_per_s(root, size, batch, batches, workers, device, on_device=False)
            device_path = bench_input.input_images_per_s(root, size, batch, batches, workers, device, on_device=True)
            e2e = end_to_end_images_per_s(detector, root, width, batch, iterations, workers, scratch)
            print(
                f"| {detector} | {precision} | {model_rate:.0f} | {cpu_path:.0f} | {device_path:.0f} | {e2e:.0f} | "
                f"{e2e / model_rate:.2f} |",
                flush=True,
            )
            if detector == "ssd300":
                ssd300_e2e = e2e
        if "ssd300" in args.detectors.split(",") and not args.no_old_default:
            # the default before precision/compile/augment_on existed: fp16 + GradScaler, eager, v2 in the workers
            old = {"precision": "fp16" if gpu else "fp32", "compile": "false", "augment_on": "cpu"}
            old_e2e = end_to_end_images_per_s("ssd300", root, width, batch, iterations, workers, scratch, old, "-old")
            print(
                f"\nSSD300 end to end, defaults {ssd300_e2e:.0f} img/s vs the old default ({old['precision']}, "
                f"eager, v2 in the workers) {old_e2e:.0f} img/s: {ssd300_e2e / old_e2e:.2f}x (target on a GPU >= 1.6)"
            )
        size = detectors.get("ssd300").layout("voc").image_size
        rates = bench_input.pixel_half_images_per_s(root, size, batch if gpu else 4, 20 if gpu else 2, device)
        print(
            "\nThe device's pixel half alone (decode + photometric + zoom-out/crop/resize + flip + normalize), "
            f"SSD300, batch {batch if gpu else 4}:"
        )
        for library, rate in rates.items():
            print(f"  {library}: {rate:.0f} img/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
