"""Checkpoint and model files: loaded without running code, and every wrong file named for what it is."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from scbloss.engine.checkpoint import CheckpointError, load_checkpoint, load_trained, restore_rng_states, rng_states


class _Payload:
    """Unpickling this runs a shell command: what a malicious 'checkpoint' would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_code_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "payload-ran"
    torch.save({"model": {}, "meta": _Payload(marker)}, tmp_path / "model_final.pt")
    with pytest.raises(CheckpointError, match="model_final.pt: refused: it holds objects other than tensors"):
        load_trained(tmp_path / "model_final.pt")
    assert not marker.exists()
    torch.load(tmp_path / "model_final.pt", weights_only=False)  # the payload is real: unsafe loading runs it
    assert marker.exists()


def test_missing_unreadable_and_wrong_kind_files_are_told_apart(tmp_path):
    with pytest.raises(CheckpointError, match="absent.pt: no such file"):
        load_trained(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PyTorch file"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}, "optimizer": {}, "iteration": 3}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="checkpoint.pt: a resumable training checkpoint, not a final model"):
        load_trained(tmp_path / "checkpoint.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="list.pt: not a file written by 'scbloss train'"):
        load_checkpoint(tmp_path / "list.pt")


def test_random_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.save({"rng": rng_states()}, tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng_states(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.mark.slow
def test_the_cli_names_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scbloss",
            "evaluate",
            "--checkpoint",
            str(tmp_path / "absent.pt"),
            "--dataset",
            "toy_voc",
            "--root",
            str(tmp_path),
            "--split",
            "test",
            "--out",
            str(tmp_path / "eval"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"scbloss: error: {tmp_path / 'absent.pt'}: no such file"


def test_the_final_models_metadata_is_one_dataclass_written_and_read_in_one_place(tmp_path):
    from scbloss.engine.checkpoint import ModelMeta
    from scbloss.models import build_model

    model = build_model("ssd300", 3, width=0.125)
    meta = ModelMeta(model="ssd300", num_classes=3, width=0.125, class_names=["a", "b"], normalization="caffe")
    torch.save({"model": model.state_dict(), "meta": meta.to_dict()}, tmp_path / "model_final.pt")
    loaded, read = load_trained(tmp_path / "model_final.pt")
    assert read == meta and read.priors == "voc" and read.category_ids is None and not loaded.training
    torch.save({"model": model.state_dict(), "meta": {"width": 0.125}}, tmp_path / "incomplete.pt")
    with pytest.raises(CheckpointError, match="incomplete.pt: its model metadata is incomplete"):
        load_trained(tmp_path / "incomplete.pt")


def test_a_model_file_whose_weights_are_another_architecture_is_one_line(tmp_path):
    from scbloss.engine.checkpoint import ModelMeta
    from scbloss.models import build_model

    weights = build_model("refinedet320", 3, width=0.125).state_dict()
    meta = ModelMeta(model="ssd300", num_classes=3, width=0.125)
    torch.save({"model": weights, "meta": meta.to_dict()}, tmp_path / "model_final.pt")
    with pytest.raises(CheckpointError) as raised:
        load_trained(tmp_path / "model_final.pt")
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600
    assert message.startswith(f"{tmp_path / 'model_final.pt'}: its weights are not those of the ssd300 its metadata")
    assert f"the file holds {len(weights)} tensors" in message


def _disk_full_on(monkeypatch, *stems):
    """torch.save fails, as it does on a full disk, for the temporary files of ``stems`` (checkpoint, model_final)."""
    real = torch.save

    def save(obj, file, *args, **kwargs):
        if any(os.path.basename(str(file)).startswith(f".{stem}.tmp") for stem in stems):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6016 vs 5904")
        return real(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    from scbloss.data.toy import ToyConfig, generate_toy

    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=8, test_images=2, seed=6))


def _config(toy, **overrides):
    from scbloss.engine.config import config_from_dict

    values = {"model": "ssd300", "width": 0.125, "batch_norm": True, "batch_size": 2, "max_iter": 3, "lr_steps": [2]}
    values |= {"num_workers": 0, "log_every": 1, "dataset": {"kind": "toy_voc", "root": str(toy)}}
    return config_from_dict(values | overrides)


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_file(tiny_toy, tmp_path, monkeypatch):
    from scbloss.engine.train import train

    real_save = torch.save
    saved = []

    def second_save_fails(obj, file, *args, **kwargs):  # the checkpoint of iteration 1 is written, that of 2 not
        saved.append(file)
        if len(saved) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6016 vs 5904")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_fails)
    with pytest.raises(CheckpointError) as raised:
        train(_config(tiny_toy, checkpoint_every=1), tmp_path / "run")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'run' / 'checkpoint.pt'}: could not be written ([enforce fail")
    assert "MiB needed" in message and "MiB free on its filesystem" in message and "\n" not in message
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 1  # the previous one, intact
    assert [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name] == []


@pytest.mark.slow
def test_a_failed_final_save_leaves_a_resumable_checkpoint_of_the_last_iteration(tiny_toy, tmp_path, monkeypatch):
    from scbloss.engine.train import train

    _disk_full_on(monkeypatch, "model_final")
    with pytest.raises(CheckpointError, match=r"model_final.pt: could not be written .* holds iteration 3: free space"):
        train(_config(tiny_toy, checkpoint_every=100), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 3
    monkeypatch.undo()
    final = train(_config(tiny_toy, checkpoint_every=100), tmp_path / "run")  # resumes at 3: nothing left to train
    assert load_checkpoint(final)["meta"]["iterations"] == 3 and not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_when_nothing_can_be_saved_the_error_says_what_is_lost(tiny_toy, tmp_path, monkeypatch):
    from scbloss.engine.train import train

    _disk_full_on(monkeypatch, "model_final", "checkpoint")
    with pytest.raises(CheckpointError, match="No checkpoint either .*: all 3 iterations are lost"):
        train(_config(tiny_toy, checkpoint_every=100), tmp_path / "run")


@pytest.mark.slow
def test_temporary_files_of_killed_writers_are_removed_at_the_next_start(tiny_toy, tmp_path):
    from scbloss.engine.train import train

    dead = subprocess.Popen(["true"])  # a process id that no longer runs
    dead.wait()
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / f".checkpoint.tmp{dead.pid}.pt"
    stale.write_bytes(b"")
    train(_config(tiny_toy, max_iter=1, lr_steps=[]), tmp_path / "run")
    assert not stale.exists()


def test_a_run_saved_before_a_key_existed_resumes_with_that_keys_default(tmp_path):
    """A config saved without `recipe` (written before the key existed) trained by its default, `original`: no
    change for a run by it, a change naming old and new values for a run by another."""
    from scbloss.engine.checkpoint import ConfigChanged, compare_configs
    from scbloss.engine.config import config_from_dict

    current = config_from_dict({"dataset": {"kind": "toy_voc", "root": "t"}, "model": "ssd300"})
    saved = current.to_dict()
    del saved["recipe"]
    assert compare_configs(saved, current, tmp_path) == {}
    authors = config_from_dict({"dataset": {"kind": "toy_voc", "root": "t"}, "model": "ssd300", "recipe": "authors"})
    with pytest.raises(ConfigChanged, match=r"recipe: 'original' -> 'authors'"):
        compare_configs(saved, authors, tmp_path)
