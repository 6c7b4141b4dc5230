"""What happens around each training step: checkpoints, the metrics log, progress, stop signals."""

from __future__ import annotations

import csv
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ..atomic import atomic_path
from .trainer import HookBase

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """SIGTERM or SIGUSR1 arrived; a checkpoint was written."""

    def __init__(self, signum: int, iteration: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint written")
        self.signum, self.iteration = signum, iteration


class PeriodicCheckpointer(HookBase):
    """``save(iteration, reason)`` every ``every`` iterations (not at the end: the final model is written instead)."""

    def __init__(self, save: Callable[[int, str], None], every: int) -> None:
        self.save, self.every = save, every

    def after_step(self) -> None:
        done = self.trainer.iter
        if done % self.every == 0 and done < self.trainer.max_iter:
            self.save(done, f"every {self.every} iterations")


class StopOnSignal(HookBase):
    """SIGTERM/SIGUSR1 set a flag; after the step in flight, ``save`` runs and :class:`Interrupted` is raised.

    Under several processes ``agree(flag)`` is true on every rank when any rank has the flag, so all stop after the
    same step; ``barrier`` then holds the others until rank 0 has written the checkpoint.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(
        self,
        save: Callable[[int, str], None],
        agree: Callable[[bool], bool] | None = None,
        barrier: Callable[[], None] | None = None,
    ) -> None:
        self.save, self.agree, self.barrier = save, agree, barrier
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def before_train(self) -> None:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def after_step(self) -> None:
        stop = self.signum is not None
        if self.agree is not None and self.agree(stop) and not stop:
            self.signum = signal.SIGTERM  # another rank was signalled
            stop = True
        if stop:
            self.save(self.trainer.iter, signal.Signals(self.signum).name)
            if self.barrier is not None:
                self.barrier()
            raise Interrupted(self.signum, self.trainer.iter)

    def after_train(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def loss_terms(losses: dict) -> list[str]:
    return sorted(key for key in losses if key.startswith("loss_"))


class MetricsWriter(HookBase):
    """Appends iteration, lr, every ``loss_*`` term, num_pos and images/s to a CSV every ``every`` iterations.

    Rows past ``resumed_at`` (written before an interruption, to be recomputed) are dropped first. ``last_row`` is
    the latest row as written (column -> value), for hooks registered after this one that log the same values.
    """

    def __init__(self, path: Path, every: int, resumed_at: int, world_size: int = 1) -> None:
        self.path, self.every, self.resumed_at, self.world_size = Path(path), every, resumed_at, world_size
        self._handle = None
        self._writer: csv.DictWriter | None = None
        self._tick, self._seen = 0.0, 0
        self.last_row: dict | None = None

    def before_train(self) -> None:
        fields = None
        if self.path.exists():
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                rows = [row for row in reader if int(row["iteration"]) <= self.resumed_at]
                fields = reader.fieldnames
            with atomic_path(self.path) as temporary, open(temporary, "w", newline="") as handle:
                if fields:
                    writer = csv.DictWriter(handle, fieldnames=fields)
                    writer.writeheader()
                    writer.writerows(rows)
        self._fields = fields
        self._handle = open(self.path, "a", newline="")
        self._tick, self._seen = time.perf_counter(), 0

    def after_step(self) -> None:
        trainer = self.trainer
        self._seen += trainer.batch_images * self.world_size
        if trainer.iter % self.every and trainer.iter != trainer.max_iter:
            return
        if self._writer is None:
            self._fields = self._fields or ["iteration", "lr", *loss_terms(trainer.losses), "num_pos", "images_per_s"]
            self._writer = csv.DictWriter(self._handle, fieldnames=self._fields, extrasaction="ignore")
            if self._handle.tell() == 0:
                self._writer.writeheader()
        elapsed = time.perf_counter() - self._tick
        row = {
            "iteration": trainer.iter,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "num_pos": int(trainer.losses["num_pos"]),
            "images_per_s": f"{self._seen / max(elapsed, 1e-9):.2f}",
        }
        row.update({key: f"{float(trainer.losses[key]):.6f}" for key in loss_terms(trainer.losses)})
        self._writer.writerow(row)
        self._handle.flush()
        self.last_row = {field: row[field] for field in self._fields if field in row}
        self._tick, self._seen = time.perf_counter(), 0

    def after_train(self) -> None:
        if self._handle:
            self._handle.close()


class ProgressReporter(HookBase):
    """A progress bar on stderr and, every ``every`` iterations, a log line with each loss term and the lr."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._bar = None

    def before_train(self) -> None:
        trainer = self.trainer
        self._bar = tqdm(
            total=trainer.max_iter,
            initial=trainer.start_iter,
            desc="train",
            unit="it",
            file=sys.stderr,
            mininterval=10,
            dynamic_ncols=True,
        )

    def after_step(self) -> None:
        trainer = self.trainer
        self._bar.update(1)
        if trainer.iter % self.every == 0 or trainer.iter == trainer.max_iter:
            terms = " ".join(f"{key} {float(trainer.losses[key]):.4f}" for key in loss_terms(trainer.losses))
            lr = trainer.optimizer.param_groups[0]["lr"]
            log.info("iteration %d/%d %s lr %.2e", trainer.iter, trainer.max_iter, terms, lr)

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()


__all__ = ["Interrupted", "MetricsWriter", "PeriodicCheckpointer", "ProgressReporter", "StopOnSignal", "loss_terms"]
