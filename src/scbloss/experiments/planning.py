"""GPU-hour planning: each run's estimated training time from the detectors' measured rates, per table."""

from __future__ import annotations

from .. import detectors
from .matrix import Run, runs_for_tables, with_earlier_stages
from .run_config import train_config
from .specs import table_specs


def training_rate(config: dict, model: str) -> float | None:
    """Training images/s per GPU of a detector: the config's own `throughput` if it names the model, else the rate
    the registry holds for it as measured on the device `throughput_on` names."""
    if model in config["throughput"]:
        return config["throughput"][model]
    measured = detectors.get(model).throughput.get(config["throughput_on"])
    return measured.images_per_s if measured else None


def gpus_per_run(config: dict) -> int:
    """GPUs a training run uses: the config's resources.train.gpu per node x nodes (at least one)."""
    train = config["resources"]["train"]
    return max(1, train.get("gpu") or 0) * max(1, train.get("nodes") or 1)


def gpu_hours(config: dict, run: Run) -> float:
    """Estimated GPU-hours of training (GPUs x hours): images seen / training images per second per GPU, which is
    the same on N GPUs when they scale linearly (each takes batch / N images of every step)."""
    values = train_config(config, run)
    rate = training_rate(config, run.model)
    images = values["max_iter"] * values["batch_size"] * values.get("accumulate_grad", 1)
    return images / rate / 3600 if rate else float("nan")


def plan(config: dict) -> str:
    """What the config will run: per table, its runs (new and shared, with the earlier stages they start from) and
    their estimated GPU-hours; runs of a detector without a measured rate are counted apart, not guessed."""
    specs = table_specs(config)
    seeds = int(config["seeds"])
    lines, seen = [], set()

    def hours_of(runs: list[Run]) -> tuple[float, str]:
        """Their GPU-hours where the detector's rate is known; how many runs are left out for want of one."""
        hours = [gpu_hours(config, run) for run in runs]
        unknown = sum(h != h for h in hours)  # NaN: no rate for the run's detector
        return sum(h for h in hours if h == h), f", + {unknown} run(s) without a measured rate" if unknown else ""

    for spec in specs:
        runs = with_earlier_stages(config, runs_for_tables([spec], seeds))
        new = [r for r in runs if r not in seen]
        seen.update(runs)
        hours, unknown = hours_of(new)
        lines.append(f"{spec['id']}: {len(runs)} runs ({len(new)} new), {hours:.1f} GPU-h for the new ones{unknown}")
    rates = {model: training_rate(config, model) for model in sorted({run.model for run in seen})}
    gpus = gpus_per_run(config)
    total_hours, unknown = hours_of(sorted(seen))
    longest = max((h for h in (gpu_hours(config, run) for run in seen) if h == h), default=0.0) / gpus
    lines.append(
        f"total: {len(seen)} training runs, {total_hours:.1f} GPU-h of training (GPUs x hours){unknown}; with {gpus} "
        f"GPU(s) per run the longest run takes {longest:.1f} h"
    )
    lines.append(
        f"rates (images/s per GPU, measured on {config['throughput_on']!r} unless the config's throughput "
        "sets them): " + ", ".join(f"{m} {r if r else 'unknown'}" for m, r in rates.items())
    )
    lines.append("jobs per rule: see `snakemake -n` (its Job stats)")
    return "\n".join(lines)


__all__ = ["gpu_hours", "gpus_per_run", "plan", "training_rate"]
