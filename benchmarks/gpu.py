"""The GPU measurements of issues 25 and 26 in one command, two Markdown tables.

Issue 25, the model step (forward + the padded loss + backward on a fixed synthetic batch, SGD eager), per detector:
  eager / compiled / graphed img/s   the network forward + `criterion.padded` run eagerly, under `torch.compile`
                                     (default mode), or with mode="reduce-overhead" (CUDA graphs); the backward runs
                                     through the compiled graph's backward, the optimizer step eagerly
  peak memory                        torch.cuda.max_memory_allocated over each mode's steps
  GFLOP/image                        torch.utils.flop_counter.FlopCounterMode over one eager step (forward + backward)
  fraction of the FLOP bound         img/s x FLOP/image / the device's bf16 dense peak (named by the device's name)
Issue 26, feeding the step, per detector:
  input pipeline img/s               the training input pipeline alone (the path `augment_on: auto` takes), 8 workers
  end-to-end img/s                   `scbloss train` with the defaults on VOC-sized JPEGs, from its metrics log
  end-to-end / model-only            against the fastest model step measured above (its mode named)
  the paper's GPU-hours              `snakemake plan`'s estimate for config/paper.yaml at the measured end-to-end rates
Options kept from before: SSD300 end to end against the old default (--old-default) and the device's pixel half
against kornia's (--pixel-half).

Usage: python benchmarks/gpu.py [--device cuda|cpu] [--quick] [--detectors ...] [--compiled ...] [--budget-s S]
The compiled and graphed columns cost an inductor compile each (40-90 s on a full-width detector), so by default only
the detectors named by --compiled get them; parts that would not fit --budget-s are skipped and say so. On a CPU it
runs at tiny sizes (width 0.125, batch 2) to check the machinery: no compiled or graphed columns there. The tables go
to stdout and, when OUT is set (or --out names a file), to $OUT/gpu-tables.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import gc
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_input  # noqa: E402

from scbloss import detectors  # noqa: E402
from scbloss.engine.precision import configure_device, resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# bf16 dense tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's datasheets: H100 SXM5 and H200 SXM both list
# 1,979 TFLOPS with sparsity. PCIe and NVL parts clock lower and are left unknown rather than guessed.
BF16_DENSE_PEAK = {"H200": 989.4e12, "H100 SXM": 989.4e12}
COMPILE_S = 120  # budget a compiled or graphed step needs left before it starts (a compile takes 40-90 s)
END_TO_END_S = 120  # budget an end-to-end run needs left before it starts (its compile and 100 iterations)
E2E_ORDER = ("ssd300", "refinedet320", "fssd300", "ssd512", "dssd321", "fssd512", "dssd513")


def bf16_peak_flops(device_name: str) -> float | None:
    """The bf16 dense peak (FLOP/s) of a GPU named ``device_name`` (torch.cuda.get_device_name), None if unknown.
    An H100 is the SXM part when its name says SXM or HBM3 ("NVIDIA H100 80GB HBM3"); NVL parts are unknown."""
    name = device_name.upper()
    if "NVL" in name:
        return None
    if "H200" in name:
        return BF16_DENSE_PEAK["H200"]
    if "H100" in name and ("SXM" in name or "HBM3" in name):
        return BF16_DENSE_PEAK["H100 SXM"]
    return None


def flop_bound_fraction(images_per_s: float | None, flops_per_image: float | None, peak: float | None):
    """The share of the device's peak a step uses: images/s x FLOP/image / peak FLOP/s (None if any is unknown)."""
    if images_per_s is None or flops_per_image is None or not peak:
        return None
    return images_per_s * flops_per_image / peak


def with_schema_defaults(config: dict, schema: dict, node: dict | None = None) -> dict:
    """``config`` with the defaults of a JSON schema filled in where a key is missing, at every level, as Snakemake's
    validate(set_default=True) fills them (``$ref`` to the schema's own definitions followed)."""
    node = schema if node is None else node
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(config, dict):
        return config
    properties = node.get("properties", {})
    for key, sub in properties.items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
    extra = node.get("additionalProperties")
    for key, value in config.items():
        sub = properties.get(key, extra if isinstance(extra, dict) else None)
        if sub is not None:
            with_schema_defaults(value, schema, sub)
    return config


def paper_plan(rates: dict[str, float] | None = None) -> str:
    """`snakemake plan --configfile config/paper.yaml`'s text, with ``rates`` (images/s per GPU by model) replacing the
    registry's measured rates, as the config's `throughput` key does."""
    from scbloss.experiments import plan

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = with_schema_defaults(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), schema)
    config["throughput"] = {**config["throughput"], **(rates or {})}
    cwd = os.getcwd()
    os.chdir(REPO)  # the config's folders (paper_tables/) are relative to the checkout
    try:
        return plan(config)
    finally:
        os.chdir(cwd)


@dataclass
class Measured:
    rate: float | None = None  # images/s
    peak_bytes: int | None = None
    note: str = ""  # why there is no rate (n/a, skipped, failed), or a warning

    def cell(self) -> str:
        if self.rate is None:
            return self.note
        return rate_text(self.rate) + (f" ({self.note})" if self.note else "")


class ModelStep:
    """One detector's training step on a fixed synthetic batch, in the precision `auto` resolves for the device."""

    def __init__(self, name: str, width: float, batch: int, device: torch.device):
        from scbloss.models import build_criterion, build_model

        self.device, self.batch = device, batch
        self.settings = resolve("auto", "false", device)
        fmt = self.settings.memory_format
        self.model = build_model(name, 21, width, "coco", batch_norm=width < 1).to(device, memory_format=fmt)
        self.criterion = build_criterion(name, "scb")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.settings.scale_loss)
        size = self.model.layout.image_size
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch, 3, size, size, generator=generator).to(device, memory_format=fmt)
        targets = [
            {
                "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.6, 0.55, 0.7, 0.62]], device=device),
                "labels": torch.tensor([3, 7], device=device),
            }
            for _ in range(batch)
        ]
        with torch.no_grad(), self._autocast():
            outputs = self.model(self.images)
        self.padded = self.criterion.pad(outputs, self.model, targets)  # the host-side step, once: the batch is fixed

    def _autocast(self):
        dtype = self.settings.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def loss(self, images, padded):
        """What is compiled: the network forward and the padded loss (its backward comes with it)."""
        from scbloss.detection.criterion import total_loss

        with self._autocast():
            outputs = self.model(images)
        return total_loss(self.criterion.padded(outputs, self.model, padded))

    def step_function(self, mode: str):
        """A callable running one step: ``mode`` eager, compiled (torch.compile, default mode) or graphed
        (mode="reduce-overhead"); the optimizer always eager."""
        loss = self.loss
        if mode != "eager":
            torch._dynamo.reset()
            loss = torch.compile(self.loss, mode="reduce-overhead" if mode == "graphed" else None)

        def step():
            if mode == "graphed":
                torch.compiler.cudagraph_mark_step_begin()
            value = loss(self.images, self.padded)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(value).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

        return step

    def flops_per_image(self) -> float:
        """FLOPs of one eager step (forward + loss + backward), counted by torch's flop counter, per image."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            value = self.loss(self.images, self.padded)
            value.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops() / self.batch

    def measure(self, mode: str, warmup: int, steps: int) -> Measured:
        cuda = self.device.type == "cuda"
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        from torch._dynamo.utils import counters

        skips = counters["inductor"]["cudagraph_skips"]
        seconds = bench_input._seconds_per_call(self.step_function(mode), warmup, steps, self.device)
        note = "CUDA graphs skipped, see stderr" if counters["inductor"]["cudagraph_skips"] > skips else ""
        peak = torch.cuda.max_memory_allocated(self.device) if cuda else None
        return Measured(self.batch / seconds, peak, note)


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
    timeout: float | None = None,
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
    command = [sys.executable, "-m", "scbloss", "train", "--config", str(folder / f"{name}.yaml")]
    with open(folder / f"{name}.log", "w") as log:  # its progress bar and log lines, shown only if it fails
        command += ["--out", str(folder / name)]
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=log, timeout=timeout)
    with open(folder / name / "metrics.csv", newline="") as handle:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(handle)]
    kept = rates[max(1, len(rates) // 5) :] or rates
    return sum(kept) / len(kept)


def rate_text(rate: float) -> str:
    """A rate as a table shows it: whole images/s, or two significant digits below 10 (a CPU's tiny rates)."""
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"


def _fmt(value: float | None, pattern: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, pattern)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer steps and images (noisier)")
    parser.add_argument("--detectors", default=",".join(E2E_ORDER), help="every column but compiled/graphed")
    parser.add_argument(
        "--compiled", default="ssd300,refinedet320", help="detectors that get the compiled and graphed columns"
    )
    parser.add_argument("--batch", type=int, help="images per step (default: 32 on a GPU, the recipes' per GPU)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (a paper training job's 8 cores)")
    parser.add_argument("--images", type=Path, help="a toy-layout folder of VOC-sized JPEGs to reuse")
    parser.add_argument("--budget-s", type=float, default=440, help="skip the parts that would not fit this (s)")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip `scbloss train` (and the plan)")
    parser.add_argument("--old-default", action="store_true", help="SSD300 end to end with the old default too")
    parser.add_argument("--pixel-half", action="store_true", help="the device's pixel half against kornia's")
    parser.add_argument("--out", type=Path, help="also write the tables here (default: $OUT/gpu-tables.md)")
    args = parser.parse_args()
    start = time.monotonic()

    def left() -> float:
        return args.budget_s - (time.monotonic() - start)

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:5.0f} s] {message}", file=sys.stderr, flush=True)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    configure_device(device)  # TF32 as training has it (fp32 work in a bf16 step)
    width = 1.0 if gpu else 0.125
    batch = args.batch or (32 if gpu else 2)
    warmup, steps = (3, 10 if args.quick else 20) if gpu else (1, 2)
    iterations = (60 if args.quick else 100) if gpu else 4
    workers = args.workers if gpu else min(args.workers, 2)
    names = args.detectors.split(",")
    compiled = [n for n in args.compiled.split(",") if n in names] if gpu else []
    device_name = torch.cuda.get_device_name(device) if gpu else f"CPU ({os.cpu_count()} cores)"
    peak = bf16_peak_flops(device_name) if gpu else None
    header = (
        f"{device_name}, torch {torch.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"width {width}, batch {batch}, {workers} workers"
    )
    out = args.out or (Path(os.environ["OUT"]) / "gpu-tables.md" if os.environ.get("OUT") else None)

    model: dict[str, dict[str, Measured]] = {n: {} for n in names}
    flops: dict[str, float | None] = {}
    precision: dict[str, str] = {}
    pipeline: dict[str, float] = {}
    e2e: dict[str, Measured] = {}
    extra: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = args.images or bench_input.voc_sized_images(scratch / "voc-sized", 96 if gpu else 8)
        progress("images ready")
        # 1. every detector: the eager step, its FLOPs and memory, and the input pipeline alone (cheap parts first)
        for name in names:
            for mode in ("compiled", "graphed"):
                model[name][mode] = Measured(note="n/a (CPU)" if not gpu else "not asked (--compiled)")
            precision[name], flops[name] = resolve("auto", "false", device).name, None
            try:
                step = ModelStep(name, width, batch, device)
                flops[name] = step.flops_per_image()
                model[name]["eager"] = step.measure("eager", warmup, steps)
                del step
            except Exception as error:  # out of memory at this batch, say: the other rows still come
                traceback.print_exc()
                model[name]["eager"] = Measured(note=f"failed: {type(error).__name__}")
                compiled = [n for n in compiled if n != name]
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
            size = detectors.get(name).layout("voc").image_size
            pipeline[name] = bench_input.input_images_per_s(
                root, size, batch, 24 if gpu else 3, workers, device, on_device=gpu
            )
            progress(f"{name}: eager {model[name]['eager'].cell()} img/s, input {rate_text(pipeline[name])} img/s")
        # 2. the compiled detectors: compiled and graphed steps, then each one's end to end; 3. the others end to end
        order = compiled + [n for n in E2E_ORDER if n in names and n not in compiled]
        order += [n for n in names if n not in order]
        for name in order:
            if name in compiled:
                step = ModelStep(name, width, batch, device)
                for mode in ("compiled", "graphed"):
                    if left() < COMPILE_S:
                        model[name][mode] = Measured(note=f"skipped (budget: {left():.0f} s left)")
                        continue
                    try:
                        model[name][mode] = step.measure(mode, warmup, steps)
                    except Exception as error:  # one detector's failure must not lose the other rows
                        traceback.print_exc()
                        model[name][mode] = Measured(note=f"failed: {type(error).__name__}")
                    progress(f"{name}: {mode} {model[name][mode].cell()}")
                del step
                torch._dynamo.reset()
                gc.collect()
                torch.cuda.empty_cache()
            if args.no_end_to_end:
                e2e[name] = Measured(note="not asked")
            elif gpu and left() < END_TO_END_S:  # on a CPU the budget is not enforced
                e2e[name] = Measured(note=f"skipped (budget: {left():.0f} s left)")
            else:
                try:
                    timeout = max(1.0, left()) if gpu else None
                    rate = end_to_end_images_per_s(
                        name, root, width, batch, iterations, workers, scratch, None, "", timeout
                    )
                    e2e[name] = Measured(rate)
                except subprocess.TimeoutExpired:
                    e2e[name] = Measured(note="stopped (budget)")
                except subprocess.CalledProcessError as error:
                    print((scratch / f"{name}.log").read_text()[-4000:], file=sys.stderr)
                    e2e[name] = Measured(note=f"failed (exit {error.returncode})")
                progress(f"{name}: end to end {e2e[name].cell()}")
        if args.old_default and e2e.get("ssd300", Measured()).rate:
            # the default before precision/compile/augment_on existed: fp16 + GradScaler, eager, v2 in the workers
            old = {"precision": "fp16" if gpu else "fp32", "compile": "false", "augment_on": "cpu"}
            old_e2e = end_to_end_images_per_s("ssd300", root, width, batch, iterations, workers, scratch, old, "-old")
            extra.append(
                f"SSD300 end to end, defaults {e2e['ssd300'].rate:.0f} img/s vs the old default ({old['precision']}, "
                f"eager, v2 in the workers) {old_e2e:.0f} img/s: {e2e['ssd300'].rate / old_e2e:.2f}x"
            )
        if args.pixel_half:
            size = detectors.get("ssd300").layout("voc").image_size
            rates = bench_input.pixel_half_images_per_s(root, size, batch, 20 if gpu else 2, device)
            extra.append(f"The device's pixel half alone, SSD300, batch {batch}:")
            extra += [f"  {library}: {rate:.0f} img/s" for library, rate in rates.items()]

    lines = [f"## Issue 25: the model step — {header}", ""]
    lines.append(
        f"bf16 dense peak: {peak / 1e12:.1f} TFLOPS ({device_name})" if peak else f"peak unknown ({device_name})"
    )
    lines.append("")
    lines.append(
        "| detector | precision | GFLOP/image | eager img/s | compiled img/s | graphed img/s | "
        "peak GiB eager / compiled / graphed | FLOP-bound img/s | fraction eager / compiled / graphed |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        runs = [model[name][mode] for mode in ("eager", "compiled", "graphed")]
        memory = " / ".join(_fmt(r.peak_bytes and r.peak_bytes / 2**30, ".1f") for r in runs)
        bound = peak / flops[name] if peak and flops[name] else None
        fractions = " / ".join(_fmt(flop_bound_fraction(r.rate, flops[name], peak), ".2f") for r in runs)
        lines.append(
            f"| {name} | {precision[name]} | {_fmt(flops[name] and flops[name] / 1e9, '.1f')} | "
            + " | ".join(r.cell() for r in runs)
            + f" | {memory} | {_fmt(bound, '.0f')} | {fractions} |"
        )
    lines += ["", f"## Issue 26: feeding the step — {header}", ""]
    lines.append(
        f"| detector | input pipeline img/s ({'device' if gpu else 'CPU'} path) | end-to-end img/s | "
        "model-only img/s (fastest mode) | end-to-end / model-only |"
    )
    lines.append("|---|---|---|---|---|")
    measured = {}
    for name in names:
        mode, best = max(
            ((m, r) for m, r in model[name].items() if r.rate is not None),
            key=lambda item: item[1].rate,
            default=("none", Measured(note="failed")),
        )
        run = e2e.get(name, Measured(note="not run"))
        ratio = run.rate / best.rate if run.rate and best.rate else None
        if run.rate:
            measured[name] = round(run.rate, 1)
        lines.append(
            f"| {name} | {rate_text(pipeline[name])} | {run.cell()} | {best.cell()} ({mode}) | {_fmt(ratio, '.2f')} |"
        )
    if measured and not args.no_end_to_end:
        lines += [
            "",
            "The paper's GPU-hours (`snakemake plan --configfile config/paper.yaml`) at these end-to-end rates",
        ]
        if not gpu:
            lines.append("(a CPU at tiny sizes: the machinery only, the hours mean nothing)")
        lines += ["", "```text", paper_plan(measured), "```", ""]
        before = next(line for line in paper_plan().splitlines() if line.startswith("total:"))
        lines.append(f"At the registry's rates (throughput.yaml) instead: {before}")
    if extra:
        lines += ["", *extra]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    progress(f"done{f', tables in {out}' if out else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
