"""The training loop: one ``run_step`` per iteration, everything around it in hooks (detectron2's TrainerBase)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from ..data.loader import batches
from ..detection.criterion import total_loss

# How often the loop reads back whether the loss stayed finite: each read makes the CPU wait for the GPU, so it is
# done every this many iterations (and before any hook with an ``every`` acts), not after every step
FINITE_CHECK_EVERY = 20
_NEVER = 2**62  # the first non-finite iteration while there is none


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class HookBase:
    """Called by :class:`Trainer` around the loop; ``self.trainer`` (a weak proxy) is set when it is registered.

    A hook with an integer ``every`` acts after every that many iterations (a checkpoint, a logged row); the loop
    checks that the loss stayed finite before such an iteration's hooks, so none of them sees a diverged step.
    """

    trainer: Trainer

    def before_train(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_train(self) -> None:
        pass


class Trainer:
    """SGD over an iteration-based loader: forward, the criterion's ``loss_*`` terms, backward, optimizer step.

    ``model`` is the module whose parameters are stepped (and which the criterion asks for its priors);
    ``forward`` is what runs the images (the model itself, compiled, or in DistributedDataParallel).
    ``prepare(batch)`` turns what the loader yields into (images on the device, targets on the device);
    ``lr_at(iteration)`` is the learning rate of an iteration, set before its step, so the schedule follows the
    iteration count whatever the loss scaler skips. With ``accumulate`` > 1 a loader batch is split into that many
    passes, each backpropagating its loss / ``accumulate``, and the optimizer steps once on their summed gradients
    (Caffe's ``iter_size``). After each step, ``iter`` is the number of iterations done and ``losses`` holds the
    step's terms, losses averaged and counts summed over its passes (detached tensors; of the global batch under
    several processes). Whether the loss stayed finite is recorded on the device each step and read every
    ``check_finite_every`` iterations, at the last, and before any periodic hook acts (:meth:`check_finite`).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        criterion,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
        scaler: torch.amp.GradScaler,
        loader: Iterable,
        prepare: Callable,
        start_iter: int,
        max_iter: int,
        forward: nn.Module | None = None,
        autocast_dtype: torch.dtype | None = None,
        clip_grad_norm: float | None = None,
        global_terms: Callable[[dict], dict] | None = None,
        accumulate: int = 1,
        check_finite_every: int = FINITE_CHECK_EVERY,
    ) -> None:
        self.model, self.criterion, self.optimizer, self.lr_at, self.scaler = model, criterion, optimizer, lr_at, scaler
        self.loader, self.prepare = loader, prepare
        self.forward = forward if forward is not None else model
        self.autocast_dtype, self.clip_grad_norm = autocast_dtype, clip_grad_norm
        self.global_terms = global_terms  # under several processes: this rank's terms -> the global batch's
        self.accumulate = accumulate
        self.device = next(model.parameters()).device
        self.start_iter, self.iter, self.max_iter = start_iter, start_iter, max_iter
        self.losses: dict[str, torch.Tensor] = {}
        self.batch_images = 0
        self._hooks: list[HookBase] = []
        self.check_finite_every = check_finite_every
        self._checked_to = start_iter  # iterations up to this one are known finite
        self._first_bad: torch.Tensor | None = None  # on the device: the first non-finite iteration, or _NEVER
        self._bad_terms: torch.Tensor | None = None  # that iteration's loss terms
        self._term_names: list[str] = []

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = weakref.proxy(self)  # the trainer owns its hooks; a hook does not keep it alive
            self._hooks.append(hook)

    def train(self) -> None:
        """Run the remaining iterations; hooks see every step, and ``after_train`` runs even when a step fails."""
        self.model.train()
        try:
            for hook in self._hooks:
                hook.before_train()
            # after the hooks: workers start with their signal handling in place; stopped on every way out
            with batches(self.loader) as self._data:
                while self.iter < self.max_iter:
                    self.run_step()
                    self.iter += 1
                    if self._check_due():
                        self.check_finite()
                    for hook in self._hooks:
                        hook.after_step()
        finally:
            self._data = None
            for hook in self._hooks:
                hook.after_train()

    def run_step(self) -> None:
        images, targets = self.prepare(next(self._data))
        if len(images) % self.accumulate:
            raise ValueError(f"a batch of {len(images)} images does not split into {self.accumulate} equal passes")
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.iter)
        self.optimizer.zero_grad(set_to_none=True)
        size = len(images) // self.accumulate
        step_losses: dict[str, torch.Tensor] = {}
        for start in range(0, len(images), size):
            last = start + size == len(images)
            losses = self._forward_backward(images[start : start + size], targets[start : start + size], last)
            for key, value in losses.items():  # loss terms averaged over the passes, counts (num_pos) summed
                share = value.detach() / self.accumulate if key.startswith("loss_") else value.detach()
                step_losses[key] = step_losses.get(key, 0) + share
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._record_finite(step_losses)
        self.losses = self.global_terms(step_losses) if self.global_terms else step_losses  # hooks log them
        self.batch_images = len(images)

    def _record_finite(self, step_losses: dict[str, torch.Tensor]) -> None:
        """Note on the device, without waiting for it, whether this iteration's loss is finite (a non-finite pass
        makes the step's averaged terms non-finite); the first that is not keeps its iteration and its terms."""
        terms = torch.stack([value.float() for key, value in step_losses.items() if key.startswith("loss_")])
        if self._first_bad is None:
            self._first_bad = torch.full((), _NEVER, dtype=torch.long, device=terms.device)
            self._bad_terms = torch.zeros_like(terms)
        first = (self._first_bad == _NEVER) & ~torch.isfinite(terms.sum())
        self._first_bad = torch.where(first, self.iter + 1, self._first_bad)
        self._bad_terms = torch.where(first, terms, self._bad_terms)
        self._term_names = [key for key in step_losses if key.startswith("loss_")]

    def _check_due(self) -> bool:
        """After every ``check_finite_every`` iterations, the last, and any iteration a periodic hook acts on."""
        periods = [self.check_finite_every] + [
            hook.every for hook in self._hooks if isinstance(getattr(hook, "every", None), int) and hook.every > 0
        ]
        return self.iter == self.max_iter or any(self.iter % period == 0 for period in periods)

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if an iteration since the last check had a NaN or infinite loss, naming
        the first such iteration, its terms, and the iterations the check covered."""
        if self._first_bad is None or self._checked_to >= self.iter:
            return
        first = int(self._first_bad)  # the one read of the device per check
        if first != _NEVER:
            terms = ", ".join(f"{key}={value}" for key, value in zip(self._term_names, self._bad_terms.tolist()))
            raise TrainingDiverged(
                f"non-finite loss at iteration {first} ({terms}); found by the check of iterations "
                f"{self._checked_to + 1}..{self.iter}"
            )
        self._checked_to = self.iter

    def _forward_backward(self, images, targets, last: bool) -> dict[str, torch.Tensor]:
        """One pass: its loss terms, its gradient (/ ``accumulate``) added; DDP averages over ranks on the last only."""
        sync = contextlib.nullcontext() if last or not hasattr(self.forward, "no_sync") else self.forward.no_sync()
        with sync:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                outputs = self.forward(images)
            losses = self.criterion(outputs, self.model, targets)
            loss = total_loss(losses)
            self.scaler.scale(loss / self.accumulate).backward()
        return losses


__all__ = ["FINITE_CHECK_EVERY", "HookBase", "Trainer", "TrainingDiverged"]
