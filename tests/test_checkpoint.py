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
