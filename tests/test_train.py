import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.engine.checkpoint import CheckpointError, ConfigChanged, load_trained
from scbloss.engine.config import ConfigError, config_from_dict, load_config
from scbloss.engine.hooks import Interrupted, loss_terms
from scbloss.engine.solver import lr_factor
from scbloss.engine.train import train
from scbloss.engine.trainer import TrainingDiverged
from scbloss.paths import CHECKPOINT, FINAL_MODEL, METRICS, RUNNING_METRICS


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
    values["lr_steps"] = [step for step in values["lr_steps"] if step < values["max_iter"]]  # a later one never applies
    return values


def test_lr_schedule():
    config = config_from_dict(
        {"dataset": DATA, "lr": 0.1, "warmup_iters": 10, "warmup_factor": 0.5, "lr_steps": [20, 30], "gamma": 0.1}
    )
    assert [lr_factor(config, i) for i in (0, 5, 10, 19, 20, 29, 30)] == pytest.approx(
        [0.5, 0.75, 1.0, 1.0, 0.1, 0.1, 0.01]
    )


DATA = {"kind": "voc", "root": "data/VOCdevkit"}


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: ssd300\nbatch_sise: 8\ndataset: {kind: voc, root: x}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key batch_sise"):
        load_config(path)
    path.write_text("dataset: {kind: voc, rooot: x}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key dataset.rooot"):
        load_config(path)
    path.write_text("weighting: focal\ndataset: {kind: voc, root: x}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: weighting: 'focal' is not one of"):
        load_config(path)


@pytest.mark.parametrize(
    "line,message",
    [
        ("lr: null", "lr: may not be null"),
        ("lr_steps: 30", r"lr_steps: expected a list of whole numbers, e.g. \[30\], got 30"),
        ('batch_norm: "no"', "batch_norm: expected true or false, got 'no'"),
        ("max_iter: 2.5", "max_iter: expected a whole number, got 2.5"),
        ("gamma: -0.1", "gamma: must be > 0, got -0.1"),
        ("warmup_iters: -1", "warmup_iters: must be >= 0, got -1"),
        ("momentum: -0.5", "momentum: must be >= 0, got -0.5"),
        ("momentum: 1.0", "momentum: must be < 1, got 1.0"),
        ("lr: fast", "lr: expected a number, got the text 'fast'"),
        ("apply_to: loc", "apply_to: 'loc' is not one of cls, cls\\+loc"),
        ("lr_steps: [30, x]", r"lr_steps\[1\]: expected a number"),
    ],
)
def test_config_values_are_typed_and_ranged(tmp_path, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"dataset: {{kind: voc, root: x}}\n{line}\n")
    with pytest.raises(ConfigError, match=f"run.yaml: {message}"):
        load_config(path)


def test_numbers_written_as_text_are_numbers(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text('dataset: {kind: toy_coco, root: x}\nlr: 1e-3\nmax_iter: "2"\nlr_steps: ["1"]\n')
    config = load_config(path)  # PyYAML reads 1e-3 (no dot) as the string '1e-3'
    assert (config.lr, config.max_iter, config.lr_steps) == (0.001, 2, [1])
    assert config.dataset.split == "train"  # the training split of a COCO-layout dataset


def test_an_empty_or_datasetless_config_is_an_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="run.yaml: the config is empty"):
        load_config(path)
    path.write_text("model: ssd300\n")
    with pytest.raises(ConfigError, match="run.yaml: missing key dataset"):
        load_config(path)
    with pytest.raises(ConfigError, match="absent.yaml: cannot read the file"):
        load_config(tmp_path / "absent.yaml")


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


@pytest.fixture(scope="module")
def uninterrupted(toy, tmp_path_factory):
    """A 20-iteration run start to end, the reference for every interrupted one (workers do not change results)."""
    folder = tmp_path_factory.mktemp("whole")
    (folder / "run.yaml").write_text(yaml.safe_dump(_config(toy, max_iter=20)))
    whole = _run_cli(folder / "run.yaml", folder / "run")
    assert whole.wait(timeout=300) == 0, whole.stdout.read()
    return folder / "run"


@pytest.mark.parametrize(
    "signum,to_group,workers",
    [(signal.SIGTERM, False, 0), (signal.SIGTERM, True, 2), (signal.SIGUSR1, True, 2)],
    ids=["TERM-to-main", "TERM-to-group-2-workers", "USR1-to-group-2-workers"],
)
@pytest.mark.slow
def test_a_stop_signal_then_resume_equals_an_uninterrupted_run(toy, tmp_path, uninterrupted, signum, to_group, workers):
    """As SLURM and `timeout` do, the signal may reach every process of the group, DataLoader workers included:
    the run still saves at the iteration it stopped and resumes bit for bit."""
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(_config(toy, max_iter=20, num_workers=workers)))
    interrupted = _run_cli(config_path, tmp_path / "split", start_new_session=True)
    deadline = time.time() + 240
    while _metric_rows(tmp_path / "split") < 3 and time.time() < deadline:
        time.sleep(0.02)
    if to_group:
        os.killpg(interrupted.pid, signum)
    else:
        interrupted.send_signal(signum)
    output = interrupted.stdout.read()
    assert interrupted.wait(timeout=120) == 128 + signum, output
    assert f"stopped by {signal.Signals(signum).name}" in output and "Traceback" not in output
    stopped_at = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["iteration"]
    logged = (tmp_path / "split" / RUNNING_METRICS).read_text().splitlines()
    assert 3 <= stopped_at < 20 and int(logged[-1].split(",")[0]) == stopped_at  # saved where it stopped
    assert not (tmp_path / "split" / FINAL_MODEL).exists() and not (tmp_path / "split" / METRICS).exists()

    resumed = _run_cli(config_path, tmp_path / "split")
    output = resumed.stdout.read()
    assert resumed.wait(timeout=300) == 0, output
    assert f"resumed from iteration {stopped_at}" in output

    a = torch.load(uninterrupted / FINAL_MODEL, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / FINAL_MODEL, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "split" / METRICS).read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 21))  # no iteration logged twice
    assert (tmp_path / "split" / "config.yaml").is_file() and not (tmp_path / "split" / CHECKPOINT).exists()
    assert not (tmp_path / "split" / RUNNING_METRICS).exists()


def _interrupt_at(monkeypatch, iteration: int) -> None:
    """Send this process SIGUSR1 during the given iteration's loss (the trainer stops after that iteration)."""
    from scbloss.detection.criterion import SingleShotCriterion

    original, calls = SingleShotCriterion.__call__, []

    def signalling(self, *args):
        calls.append(1)
        if len(calls) == iteration:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, *args)

    monkeypatch.setattr(SingleShotCriterion, "__call__", signalling)


@pytest.mark.slow
def test_resuming_with_a_config_that_changes_the_result_is_refused(toy, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(Interrupted):
        train(config_from_dict(_config(toy)), tmp_path / "run")
    monkeypatch.undo()
    for change, listed in (
        ({"lr": 2e-3}, "lr: 0.001 -> 0.002"),
        ({"width": 0.25}, "width: 0.125 -> 0.25"),
        ({"weighting": "none", "max_iter": 9}, "weighting: 'scb' -> 'none'; max_iter: 6 -> 9"),
    ):
        with pytest.raises(
            ConfigChanged,
            match=re.escape(listed) + r".*Either put the values it was started with "
            r"back into the config, or train into a new run folder \(--out\)",
        ):
            train(config_from_dict(_config(toy, **change)), tmp_path / "run")
    final = train(config_from_dict(_config(toy, log_every=2, num_workers=1)), tmp_path / "run")
    meta = torch.load(final, weights_only=True)["meta"]  # harmless changes are taken and recorded
    assert meta["config_changes"] == [{"iteration": 2, "changed": {"log_every": [1, 2], "num_workers": [0, 1]}}]
    assert (
        meta["config"]["num_workers"] == 1
        and yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["log_every"] == 2
    )
    with pytest.raises(ConfigChanged, match="model_final.pt was trained with other values of lr"):
        train(config_from_dict(_config(toy, lr=5e-3)), tmp_path / "run")  # finished: an error, not "done"


@pytest.mark.slow
def test_a_final_model_file_in_place_of_the_checkpoint_is_named(toy, tmp_path):
    final = train(config_from_dict(_config(toy, max_iter=2)), tmp_path / "done")
    (tmp_path / "run").mkdir()
    shutil.copy(final, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint.pt: a final model file \(as model_final.pt\), not a "
        r"resumable checkpoint",
    ):
        train(config_from_dict(_config(toy, max_iter=2)), tmp_path / "run")
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match="checkpoint.pt: not a readable PyTorch file .*; delete it to start"):
        train(config_from_dict(_config(toy, max_iter=2)), tmp_path / "run")


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(toy, tmp_path, monkeypatch):
    from scbloss.detection.loss import MultiBoxLoss

    original = MultiBoxLoss.forward_padded
    calls = []

    def poisoned(self, *args):
        calls.append(1)
        out = original(self, *args)
        if len(calls) == 5:
            out["loss_cls"] = out["loss_cls"] * float("nan")
        return out

    monkeypatch.setattr(MultiBoxLoss, "forward_padded", poisoned)  # what the training step calls
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 5"):
        train(config_from_dict(_config(toy, checkpoint_every=2)), tmp_path / "run")
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["iteration"] == 4
    assert not (tmp_path / "run" / FINAL_MODEL).exists()


@pytest.mark.slow
def test_finished_run_is_not_trained_again(toy, tmp_path):
    config = config_from_dict(_config(toy, max_iter=2))
    final = train(config, tmp_path / "run")
    stamp = os.stat(final).st_mtime_ns
    assert train(config, tmp_path / "run") == final and os.stat(final).st_mtime_ns == stamp
    meta = torch.load(final, weights_only=True)["meta"]
    assert meta["class_names"] == ["disc", "square", "triangle", "cross"] and meta["num_classes"] == 5


def _torchrun(config_path, out, ranks=2, **popen):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        "-m",
        "scbloss",
        "train",
        "--config",
        str(config_path),
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **popen,
    )


def _rank_pid(launcher, rank):
    """The pid of one rank among torchrun's children."""
    import psutil

    return next(
        child.pid for child in psutil.Process(launcher.pid).children() if child.environ().get("RANK") == str(rank)
    )


def _signal_rank_after_three_rows(launcher, folder, rank, signum):
    """Signal one rank of a torchrun launch once its run has logged three iterations (or after four minutes)."""
    deadline = time.time() + 240
    while _metric_rows(folder) < 3 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(_rank_pid(launcher, rank), signum)


@pytest.mark.slow
@pytest.mark.parametrize("updates, weight_tolerance", [(1, 1e-5), (4, 1e-4)])
def test_two_processes_make_the_updates_of_one(toy, tmp_path, updates, weight_tolerance):
    """DistributedDataParallel on the CPU (gloo), two ranks of 2 images against one process of 4: the same loss at
    every iteration within 1e-5 relative (float32 sums split over two ranks round differently: a loss of 26 differed
    by 4e-5) and the same weights after one update and after four: the global positive count normalizes, gradients
    are averaged. No BatchNorm: SyncBatchNorm needs a GPU."""
    values = _config(toy, max_iter=updates, batch_size=4, batch_norm=False)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    ddp = _torchrun(tmp_path / "run.yaml", tmp_path / "ddp")
    output = ddp.communicate(timeout=300)[0]
    assert ddp.returncode == 0, output
    assert "rank 0 of 2" in output and "rank 1 of 2" in output
    single = train(config_from_dict(values), tmp_path / "single")
    logs = [(tmp_path / name / METRICS).read_text().splitlines() for name in ("ddp", "single")]
    header = logs[0][0].split(",")
    for ours, theirs in zip(logs[0][1:], logs[1][1:], strict=True):
        a, b = dict(zip(header, ours.split(","))), dict(zip(header, theirs.split(",")))
        assert a["num_pos"] == b["num_pos"]  # the global batch's positives
        for term in ("loss_cls", "loss_loc"):
            assert float(a[term]) == pytest.approx(float(b[term]), rel=1e-5, abs=1e-5)
    a, b = (torch.load(path, weights_only=True)["model"] for path in (tmp_path / "ddp" / FINAL_MODEL, single))
    # each tensor within 1e-5 of its norm after one update, 1e-4 after four: float32 rounding of two ranks' sums
    # compounds in a net without BatchNorm whose biases reach 60 (measured: 1.5e-6 after one and after four with two
    # threads; 5.8e-6 and 8.5e-6 with one)
    assert max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in a) <= weight_tolerance


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_at_the_same_iteration(toy, tmp_path):
    """SIGTERM to rank 1 only: both ranks stop after the same step, rank 0 writes one checkpoint, and the resumed
    two-rank run ends with the uninterrupted one's weights."""
    values = _config(toy, max_iter=16, batch_size=4, batch_norm=False)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    whole = _torchrun(tmp_path / "run.yaml", tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stdout.read()
    split = _torchrun(tmp_path / "run.yaml", tmp_path / "split")
    _signal_rank_after_three_rows(split, tmp_path / "split", 1, signal.SIGTERM)
    output = split.communicate(timeout=120)[0]
    assert split.returncode != 0 and output.count("stopped by SIGTERM at iteration") == 2, output
    stopped = set(re.findall(r"stopped by SIGTERM at iteration (\d+)", output))
    assert len(stopped) == 1 and torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["iteration"] == int(
        stopped.pop()
    )
    resumed = _torchrun(tmp_path / "run.yaml", tmp_path / "split")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    a, b = (torch.load(tmp_path / name / FINAL_MODEL, weights_only=True)["model"] for name in ("whole", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_rank_that_dies_takes_the_run_down_with_a_message(toy, tmp_path):
    """SIGKILL to rank 1: torchrun ends rank 0 too and names the failed rank; nothing hangs."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(_config(toy, max_iter=400, batch_size=4, batch_norm=False)))
    run = _torchrun(tmp_path / "run.yaml", tmp_path / "run")
    _signal_rank_after_three_rows(run, tmp_path / "run", 1, signal.SIGKILL)
    output = run.communicate(timeout=120)[0]
    assert run.returncode != 0 and "Signal 9 (SIGKILL) received by PID" in output, output[-3000:]


@pytest.mark.slow
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
    assert meta.model == "refinedet320" and not model.training
    assert loss_terms({"loss_b": 1, "num_pos": 2, "loss_a": 3}) == ["loss_a", "loss_b"]


@pytest.mark.parametrize(
    "settings",
    [{"augment_on": "gpu"}, {"precision": "bf16"}, {"compile": "true"}],
    ids=["augmentation-on-the-device", "bf16", "compiled"],
)
@pytest.mark.slow
def test_every_mode_resumes_exactly_and_saves_plain_weights(toy, tmp_path, monkeypatch, settings):
    """The device augmentation path (here on CPU tensors), bf16 autocast with channels_last, and torch.compile
    (with its eager backend, to stay fast on a CPU): a run stopped at iteration 2 and resumed ends with the weights
    of an uninterrupted one, and its files load into a plain, uncompiled model."""
    if settings.get("compile") == "true":
        real_compile = torch.compile
        monkeypatch.setattr(torch, "compile", lambda module: real_compile(module, backend="eager"))
    values = _config(toy, max_iter=4, **settings)
    whole = train(config_from_dict(values), tmp_path / "whole")
    from scbloss.detection.criterion import SingleShotCriterion

    original = SingleShotCriterion.__call__
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(Interrupted):
        train(config_from_dict(values), tmp_path / "split")
    monkeypatch.setattr(SingleShotCriterion, "__call__", original)
    assert not any(k.startswith("_orig_mod") for k in torch.load(tmp_path / "split" / CHECKPOINT)["model"])
    split = train(config_from_dict(values), tmp_path / "split")
    a, b = (torch.load(path, weights_only=True)["model"] for path in (whole, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, meta = load_trained(split)
    assert meta.channels_last is (settings.get("precision") == "bf16")


@pytest.mark.slow
def test_prefetched_batches_train_the_same_weights_and_stop_their_workers(toy, tmp_path, monkeypatch):
    """The prefetch thread a GPU run uses (data/prefetch.py), here forced on the CPU with a loader worker: the same
    weights as batches prepared in the step, and neither the thread nor the worker outlives the run."""
    import multiprocessing
    import threading

    from scbloss.engine import train as train_module

    values = _config(toy, max_iter=4, num_workers=1)
    plain = train(config_from_dict(values), tmp_path / "plain")
    monkeypatch.setattr(train_module, "prefetches", lambda device: True)
    prefetched = train(config_from_dict(values), tmp_path / "prefetched")
    a, b = (torch.load(path, weights_only=True)["model"] for path in (plain, prefetched))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.is_alive()]
    assert not multiprocessing.active_children()


def test_fp16_on_a_cpu_is_refused(toy, tmp_path):
    with pytest.raises(ValueError, match="precision fp16 needs a CUDA device"):
        train(config_from_dict(_config(toy, precision="fp16")), tmp_path / "run")


def test_the_learning_rate_follows_the_iteration(toy, tmp_path):
    """lr is set from the iteration before each step (no scheduler to fall out of step with skipped updates):
    warm-up from 1/3 over 2 iterations, then x0.1 at iteration 4."""
    train(config_from_dict(_config(toy)), tmp_path / "run")
    rows = (tmp_path / "run" / METRICS).read_text().splitlines()[1:]
    assert [float(r.split(",")[1]) for r in rows] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 1e-4, 1e-4])
