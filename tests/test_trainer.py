"""The training loop's own contract: keyword-only construction, hooks that do not keep the trainer alive."""

import gc
import weakref

import pytest
import torch

from scbloss.engine.trainer import HookBase, Trainer, TrainingDiverged


def _trainer(**overrides):
    model = torch.nn.Linear(2, 1)
    values = dict(
        model=model,
        criterion=lambda outputs, model, targets: {"loss_x": outputs.pow(2).mean(), "num_pos": torch.tensor(1)},
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        lr_at=lambda iteration: 0.1,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        loader=[(torch.ones(4, 2), [])] * 3,
        prepare=lambda batch: batch,
        start_iter=0,
        max_iter=3,
    )
    return Trainer(**{**values, **overrides})


def test_the_trainer_takes_keywords_only():
    with pytest.raises(TypeError, match="positional"):
        Trainer(torch.nn.Linear(2, 1), None, None, None, None, [], None, 0, 1)


def test_hooks_see_every_step_and_hold_the_trainer_weakly():
    class Count(HookBase):
        steps = 0

        def after_step(self):
            self.steps = self.trainer.iter

    hook = Count()
    trainer = _trainer()
    trainer.register_hooks([hook])
    trainer.train()
    assert hook.steps == 3 == trainer.iter
    alive = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert alive() is None  # the hook did not keep it
    with pytest.raises(ReferenceError):
        _ = hook.trainer.iter


def _diverging_at(bad_iteration):
    """A criterion whose loss is NaN at one iteration (1-based) and 1 otherwise."""
    calls = []

    def criterion(outputs, model, targets):
        calls.append(1)
        value = float("nan") if len(calls) == bad_iteration else 1.0
        return {"loss_x": outputs.sum() * 0 + value, "num_pos": torch.tensor(1)}

    return criterion


def test_a_non_finite_loss_is_found_at_the_next_check_naming_its_iteration():
    """Checked every 4 iterations: a NaN at iteration 6 stops the run after iteration 8, before its hooks."""

    class Seen(HookBase):
        def __init__(self):
            self.iterations = []

        def after_step(self):
            self.iterations.append(self.trainer.iter)

    trainer = _trainer(
        criterion=_diverging_at(6), loader=[(torch.ones(4, 2), [])] * 12, max_iter=12, check_finite_every=4
    )
    hook = Seen()
    trainer.register_hooks([hook])
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 6 \(loss_x=nan\); .* iterations 5\.\.8"):
        trainer.train()
    assert hook.iterations == [1, 2, 3, 4, 5, 6, 7]


def test_a_periodic_hook_never_sees_an_unchecked_step():
    """A hook acting every 3 iterations makes iteration 3 a check too, so a NaN at iteration 2 stops the run there
    (the trainer's own period, 20, would have let it through to a checkpoint)."""

    class EveryThree(HookBase):
        every = 3

        def __init__(self):
            self.acted = []

        def after_step(self):
            if self.trainer.iter % self.every == 0:
                self.acted.append(self.trainer.iter)

    trainer = _trainer(criterion=_diverging_at(2), loader=[(torch.ones(4, 2), [])] * 6, max_iter=6)
    hook = EveryThree()
    trainer.register_hooks([hook])
    with pytest.raises(TrainingDiverged, match=r"at iteration 2 .* iterations 1\.\.3"):
        trainer.train()
    assert hook.acted == []


def test_the_last_iteration_is_checked():
    trainer = _trainer(criterion=_diverging_at(3), check_finite_every=100)
    with pytest.raises(TrainingDiverged, match="at iteration 3"):
        trainer.train()
