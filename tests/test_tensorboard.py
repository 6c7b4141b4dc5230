"""TensorBoard event files mirror the metrics log: same tags, steps and values; a resumed run shows each step once;
without the package there is no hook, no event file, and the same log."""

import csv
import logging
import sys
from types import SimpleNamespace

import pytest

from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.engine.config import config_from_dict
from scbloss.engine.hooks import MetricsWriter
from scbloss.engine.tensorboard import tensorboard_hooks
from scbloss.engine.train import train
from scbloss.engine.trainer import TrainingDiverged
from scbloss.paths import METRICS, RUNNING_METRICS

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator")
tensor_util = pytest.importorskip("tensorboard.util.tensor_util")


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _event_files(folder):
    return sorted(folder.glob("events.out.tfevents.*"))


def _scalars(folder) -> dict[str, list]:
    """Tag -> its (step, value) points as TensorBoard shows them (points a restart superseded are dropped), read by
    the classic accumulator and, the same, by the one `tensorboard --load_fast=false` serves from."""
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    points = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    served = plugin_event_accumulator.EventAccumulator(str(folder), size_guidance={"tensors": 0})
    served.Reload()
    assert points == {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in served.Tensors(tag)]
        for tag in served.Tags()["tensors"]
    }
    return points


def _assert_mirrors_the_log(folder, log_name=METRICS):
    rows, scalars = _rows(folder / log_name), _scalars(folder)
    assert sorted(scalars) == sorted(name for name in rows[0] if name != "iteration")
    for tag, points in scalars.items():
        assert [step for step, _ in points] == [int(row["iteration"]) for row in rows], tag
        assert [value for _, value in points] == pytest.approx([float(row[tag]) for row in rows], rel=1e-6), tag


def _log(folder, iterations, resumed_at=0, every=1, loss_scale=1.0):
    """The metrics log and its TensorBoard copy over ``iterations``, as around training steps (no model); the
    hooks made."""
    metrics = MetricsWriter(folder / RUNNING_METRICS, every, resumed_at)
    hooks = [metrics, *tensorboard_hooks(folder, metrics, resumed_at)]
    trainer = SimpleNamespace(iter=0, max_iter=iterations[-1], batch_images=2, losses={}, optimizer=None)
    for hook in hooks:
        hook.trainer = trainer
        hook.before_train()
    for iteration in iterations:
        trainer.iter = iteration
        trainer.optimizer = SimpleNamespace(param_groups=[{"lr": 1e-3 / iteration}])
        trainer.losses = {"loss_cls": loss_scale / iteration, "loss_loc": 0.5 + iteration, "num_pos": 3 * iteration}
        for hook in hooks:
            hook.after_step()
    for hook in hooks:
        hook.after_train()
    return hooks


def test_every_logged_row_becomes_scalars_at_its_iteration(tmp_path):
    hooks = _log(tmp_path, range(1, 6), every=2)
    assert len(hooks) == 2 and len(_event_files(tmp_path)) == 1
    assert [row["iteration"] for row in _rows(tmp_path / RUNNING_METRICS)] == ["2", "4", "5"]
    _assert_mirrors_the_log(tmp_path, RUNNING_METRICS)


def test_a_resumed_log_shows_each_step_once(tmp_path):
    """Iterations 4 and 5 were logged after the checkpoint of 3: the resumed run's values replace them."""
    _log(tmp_path, range(1, 6))
    _log(tmp_path, range(4, 7), resumed_at=3, loss_scale=2.0)
    assert len(_event_files(tmp_path)) == 2  # appended: the first run's file is kept
    _assert_mirrors_the_log(tmp_path, RUNNING_METRICS)
    assert [value for _, value in _scalars(tmp_path)["loss_cls"][3:]] == pytest.approx([2 / 4, 2 / 5, 2 / 6], abs=1e-6)


def test_without_tensorboard_there_is_no_hook_and_one_debug_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now raises ImportError
    with caplog.at_level(logging.DEBUG, logger="scbloss.engine.tensorboard"):
        assert len(_log(tmp_path, range(1, 3))) == 1
    assert _event_files(tmp_path) == [] and len(_rows(tmp_path / RUNNING_METRICS)) == 2
    assert [r.levelno for r in caplog.records if r.name == "scbloss.engine.tensorboard"] == [logging.DEBUG]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=8, test_images=2, seed=1))


def _config(toy, **overrides):
    values = {
        "model": "ssd300",
        "width": 0.125,
        "dataset": {"kind": "toy_voc", "root": str(toy), "split": "trainval"},
        "batch_size": 2,
        "warmup_iters": 1,
        "lr_steps": [],
        "max_iter": 3,
        "checkpoint_every": 100,
        "log_every": 2,
        "num_workers": 0,
        "seed": 3,
    }
    return config_from_dict({**values, **overrides})


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tensorboard") / "run"
    train(_config(toy), folder)
    return folder


@pytest.mark.slow
def test_training_writes_event_files_beside_metrics_csv(trained):
    assert len(_event_files(trained)) == 1
    assert [row["iteration"] for row in _rows(trained / METRICS)] == ["2", "3"]  # every log_every, and the last
    _assert_mirrors_the_log(trained)


@pytest.mark.slow
def test_training_without_tensorboard_writes_the_same_log_and_no_event_file(toy, tmp_path, monkeypatch, trained):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    train(_config(toy), tmp_path / "run")
    assert _event_files(tmp_path / "run") == []

    def untimed(rows):
        return [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]

    assert untimed(_rows(tmp_path / "run" / METRICS)) == untimed(_rows(trained / METRICS))


@pytest.mark.slow
def test_a_resumed_training_shows_each_step_once(toy, tmp_path, monkeypatch):
    """A crash at iteration 4 after the checkpoint of 2 leaves iteration 3 logged; the resumed run logs it again,
    and TensorBoard, like metrics.csv, keeps it once."""
    from scbloss.detection.loss import MultiBoxLoss

    original, calls = MultiBoxLoss.forward_padded, []

    def diverging_at_4(self, *args):
        calls.append(1)
        out = original(self, *args)
        if len(calls) == 4:
            out["loss_cls"] = out["loss_cls"] * float("nan")
        return out

    monkeypatch.setattr(MultiBoxLoss, "forward_padded", diverging_at_4)  # what the training step calls
    config = _config(toy, max_iter=4, log_every=1, checkpoint_every=2)
    with pytest.raises(TrainingDiverged):
        train(config, tmp_path / "run")
    monkeypatch.undo()
    assert [step for step, _ in _scalars(tmp_path / "run")["lr"]] == [1, 2, 3]
    train(config, tmp_path / "run")
    assert len(_event_files(tmp_path / "run")) == 2
    _assert_mirrors_the_log(tmp_path / "run")
