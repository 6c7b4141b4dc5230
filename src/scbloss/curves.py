"""Training curves from a run's metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .atomic import save_figure


def plot_curves(metrics_csv: Path, png: Path, title: str) -> None:
    """Classification and localization loss, and the learning rate, against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.read_csv(metrics_csv)
    if frame.empty:
        raise ValueError(f"{metrics_csv}: no rows")
    figure, (losses, lr) = plt.subplots(1, 2, figsize=(10, 3.4))
    losses.plot(frame["iteration"], frame["loss_cls"], label="loss_cls")
    losses.plot(frame["iteration"], frame["loss_loc"], label="loss_loc")
    losses.set_xlabel("iteration")
    losses.legend()
    lr.plot(frame["iteration"], frame["lr"], color="#aa3377")
    lr.set_xlabel("iteration")
    lr.set_ylabel("learning rate")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, png)


__all__ = ["plot_curves"]
