"""The training loop's own contract: keyword-only construction, hooks that do not keep the trainer alive."""

import gc
import weakref

import pytest
import torch

from scbloss.engine.trainer import HookBase, Trainer


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
