import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.engine.checkpoint import CHECKPOINT, FINAL, load_trained
from scbloss.engine.config import ConfigError, config_from_dict, load_config
from scbloss.engine.hooks import loss_terms
from scbloss.engine.train import METRICS, RUNNING_METRICS, TrainingDiverged, lr_factor, train


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=16, test_images=6, seed=1))


def _config(toy, **overrides):
    values = {
        "model": "ssd300",
        "width": 0.125,
        "dataset": {"kind": "toy_voc", "root": str(toy), "split": "trainval"},
        "batch_size": 2,
        "lr": 1e-3,
        "warmup_iters": 2,
        "lr_steps": [4],
        "max_iter": 6,
        "checkpoint_every": 100,
        "log_every": 1,
        "num_workers": 0,
        "seed": 3,
    }
    values.update(overrides)
    return values


def test_lr_schedule():
    config = config_from_dict({"lr": 0.1, "warmup_iters": 10, "warmup_factor": 0.5, "lr_steps": [20, 30], "gamma": 0.1})
    assert [lr_factor(config, i) for i in (0, 5, 10, 19, 20, 29, 30)] == pytest.approx(
        [0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01]
    )


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: ssd300\nbatch_sise: 8\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key batch_sise"):
        load_config(path)
    path.write_text("dataset: {kind: voc, rooot: x}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key dataset.rooot"):
        load_config(path)
    path.write_text("weighting: focal\n")
    with pytest.raises(ConfigError, match=r"run.yaml: weighting: 'focal' is not one of"):
        load_config(path)


def _run_cli(config_path, out, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "scbloss.cli", "train", "--config", str(config_path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _metric_rows(out):
    path = out / RUNNING_METRICS
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_sigterm_then_resume_equals_an_uninterrupted_run(toy, tmp_path):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(_config(toy, max_iter=8)))

    whole = _run_cli(config_path, tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    interrupted = _run_cli(config_path, tmp_path / "split")
    deadline = time.time() + 240
    while _metric_rows(tmp_path / "split") < 3 and time.time() < deadline:
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGTERM)
    output = interrupted.stdout.read()
    assert interrupted.wait(timeout=120) == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output
    stopped_at = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=False)["iteration"]
    assert 3 <= stopped_at < 8
    assert not (tmp_path / "split" / FINAL).exists() and not (tmp_path / "split" / METRICS).exists()

    resumed = _run_cli(config_path, tmp_path / "split")
    output = resumed.stdout.read()
    assert resumed.wait(timeout=300) == 0, output
    assert f"resumed from iteration {stopped_at}" in output

    a = torch.load(tmp_path / "whole" / FINAL, weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / FINAL, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "split" / METRICS).read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 9))  # no iteration logged twice
    assert (tmp_path / "split" / "config.yaml").is_file() and not (tmp_path / "split" / CHECKPOINT).exists()
    assert not (tmp_path / "split" / RUNNING_METRICS).exists()


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(toy, tmp_path, monkeypatch):
    from scbloss.detection.loss import MultiBoxLoss

    original = MultiBoxLoss.forward
    calls = []

    def poisoned(self, *args):
        calls.append(1)
        out = original(self, *args)
        if len(calls) == 5:
            out["loss_cls"] = out["loss_cls"] * float("nan")
        return out

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 5"):
        train(config_from_dict(_config(toy, checkpoint_every=2)), tmp_path / "run")
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["iteration"] == 4
    assert not (tmp_path / "run" / FINAL).exists()


def test_finished_run_is_not_trained_again(toy, tmp_path):
    config = config_from_dict(_config(toy, max_iter=2))
    final = train(config, tmp_path / "run")
    stamp = os.stat(final).st_mtime_ns
    assert train(config, tmp_path / "run") == final and os.stat(final).st_mtime_ns == stamp
    meta = torch.load(final, weights_only=False)["meta"]
    assert meta["class_names"] == ["disc", "square", "triangle", "cross"] and meta["num_classes"] == 5


def test_two_processes_with_torchrun(toy, tmp_path):
    """DistributedDataParallel on the CPU (gloo): two ranks share each batch and finish one model."""
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(_config(toy, max_iter=3, batch_norm=False)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "scbloss.cli",
            "train",
            "--config",
            str(config_path),
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout
    rows = (tmp_path / "ddp" / METRICS).read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3]
    assert torch.load(tmp_path / "ddp" / FINAL, weights_only=False)["meta"]["iterations"] == 3


def test_every_loss_term_of_a_criterion_is_logged(toy, tmp_path):
    """RefineDet's criterion returns ARM and ODM terms: the log, the curves' input, has a column for each."""
    final = train(config_from_dict(_config(toy, model="refinedet320", max_iter=2, variant="arm_odm")), tmp_path / "run")
    header = (tmp_path / "run" / METRICS).read_text().splitlines()[0].split(",")
    assert header == [
        "iteration",
        "lr",
        "loss_arm_cls",
        "loss_arm_loc",
        "loss_odm_cls",
        "loss_odm_loc",
        "num_pos",
        "images_per_s",
    ]
    model, meta = load_trained(final)
    assert meta["model"] == "refinedet320" and not model.training
    assert loss_terms({"loss_b": 1, "num_pos": 2, "loss_a": 3}) == ["loss_a", "loss_b"]
