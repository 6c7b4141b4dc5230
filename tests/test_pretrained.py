import hashlib

import pytest
import torch
import torchvision

from scbloss.models import build_model

from local_http import LocalServer


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A torchvision VGG16 state dict (random, like ImageNet's in layout) saved as torch.hub names it."""
    folder = tmp_path_factory.mktemp("weights")
    state = torchvision.models.vgg16(weights=None).state_dict()
    staging = folder / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    final = folder / f"vgg16-{digest[:8]}.pth"
    staging.rename(final)
    return final, state


def _check_loaded(model, state):
    trunk = model.trunk
    assert torch.equal(trunk.features[0].weight, state["features.0.weight"])
    assert torch.equal(trunk.features[28].bias, state["features.28.bias"])
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(trunk.fc[1].weight[5, 7], fc6[20, 7][::3, ::3])
    assert torch.equal(trunk.fc[1].bias, state["classifier.0.bias"][::4])
    assert torch.equal(trunk.fc[3].weight[3, 8, 0, 0], state["classifier.3.weight"][12, 32])


def test_load_from_local_file(vgg16_file):
    path, state = vgg16_file
    _check_loaded(build_model("ssd300", 21, pretrained_backbone=str(path)), state)


def test_load_from_url(vgg16_file, tmp_path, monkeypatch):
    path, state = vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server:
        server.files[f"/{path.name}"] = path.read_bytes()
        model = build_model("ssd300", 21, pretrained_backbone=f"{server.base}/{path.name}")
    _check_loaded(model, state)
    assert (tmp_path / "torch_home" / "hub" / "checkpoints" / path.name).is_file()


def test_url_with_wrong_hash_is_refused(vgg16_file, tmp_path, monkeypatch):
    path, _ = vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server, pytest.raises(RuntimeError, match="invalid hash value"):
        server.files["/vgg16-00000000.pth"] = path.read_bytes()
        build_model("ssd300", 21, pretrained_backbone=f"{server.base}/vgg16-00000000.pth")
    assert not (tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg16-00000000.pth").exists()


def test_missing_file_and_wrong_width_are_named(vgg16_file, tmp_path):
    path, _ = vgg16_file
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model("ssd300", 21, pretrained_backbone=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="need width=1.0"):
        build_model("ssd300", 21, width=0.5, pretrained_backbone=str(path))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth is not a readable PyTorch state dict"):
        build_model("ssd300", 21, pretrained_backbone=str(junk))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        build_model("ssd300", 21, pretrained_backbone=str(tmp_path / "partial.pth"))
