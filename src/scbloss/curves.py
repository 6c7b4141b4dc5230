"""Training curves from a run's metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .atomic import save_figure


def plot_curves(metrics_csv: Path, png: Path, title: str) -> None:
    """Every loss term the run logged (``loss_*`` columns), and the learning rate, against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.read_csv(metrics_csv)
    if frame.empty:
        raise ValueError(f"{metrics_csv}: no rows")
    figure, (losses, lr) = plt.subplots(1, 2, figsize=(10, 3.4))
    for column in (c for c in frame.columns if c.startswith("loss_")):
        losses.plot(frame["iteration"], frame[column], label=column)
    losses.set_xlabel("iteration")
    losses.legend()
    lr.plot(frame["iteration"], frame["lr"], color="#aa3377")
    lr.set_xlabel("iteration")
    lr.set_ylabel("learning rate")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, png)


__all__ = ["plot_curves"]
