"""Live training curves: the metrics log's rows as TensorBoard scalars, when the ``tensorboard`` extra is installed.

The event files go into the run folder beside the metrics log, so ``tensorboard --logdir results/runs`` shows every
run by its folder name. Without the package no hook is made and training writes exactly what it did before.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .hooks import MetricsWriter
from .trainer import HookBase

log = logging.getLogger(__name__)


class TensorBoardWriter(HookBase):
    """After each step ``metrics`` logged, one scalar per value column of its row (same name, value and step).

    Register it after ``metrics``. Events are flushed with every row and the file is closed however training ends.
    A run resumed at ``resumed_at`` appends a new event file that tells TensorBoard to drop the earlier files' points
    past ``resumed_at``, as the metrics log drops its rows there, so no step shows twice.
    """

    def __init__(self, folder: Path, metrics: MetricsWriter, resumed_at: int, summary_writer) -> None:
        self.folder, self.metrics, self.resumed_at = Path(folder), metrics, resumed_at
        self._summary_writer = summary_writer  # torch.utils.tensorboard.SummaryWriter
        self._writer = None

    def after_step(self) -> None:
        row = self.metrics.last_row
        step = self.trainer.iter
        if row is None or int(row["iteration"]) != step:
            return
        if self._writer is None:
            # Opened at the first row, not before training: its writer thread then starts after DataLoader workers fork.
            # Every file starts with a restart mark (purge_step): TensorBoard's Python loader takes a run's first mark
            # as its start, and only a later one as a restart that drops the points from there on.
            self._writer = self._summary_writer(log_dir=str(self.folder), purge_step=self.resumed_at + 1)
        for name, value in row.items():
            if name != "iteration":
                self._writer.add_scalar(name, float(value), step)
        self._writer.flush()

    def after_train(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_hooks(folder: Path, metrics: MetricsWriter, resumed_at: int) -> list[HookBase]:
    """``[TensorBoardWriter]`` when ``torch.utils.tensorboard`` imports, else none."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        log.debug("no TensorBoard event files: %s (install the tensorboard extra for them)", error)
        return []
    return [TensorBoardWriter(folder, metrics, resumed_at, SummaryWriter)]


__all__ = ["TensorBoardWriter", "tensorboard_hooks"]
