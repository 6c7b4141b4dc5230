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


V1 = {"pretrained_backbone": "vgg16_imagenet1k_v1"}


@pytest.mark.slow
def test_load_from_local_file(vgg16_file):
    path, state = vgg16_file
    _check_loaded(build_model("ssd300", 21, backbone_file=str(path), **V1), state)


@pytest.mark.slow
def test_load_from_url(vgg16_file, tmp_path, monkeypatch):
    path, state = vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server:
        server.files[f"/{path.name}"] = path.read_bytes()
        model = build_model("ssd300", 21, backbone_file=f"{server.base}/{path.name}", **V1)
    _check_loaded(model, state)
    assert (tmp_path / "torch_home" / "hub" / "checkpoints" / path.name).is_file()


@pytest.mark.slow
def test_url_with_wrong_hash_is_refused(vgg16_file, tmp_path, monkeypatch):
    path, _ = vgg16_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server, pytest.raises(RuntimeError, match="invalid hash value"):
        server.files["/vgg16-00000000.pth"] = path.read_bytes()
        build_model("ssd300", 21, backbone_file=f"{server.base}/vgg16-00000000.pth", **V1)
    assert not (tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg16-00000000.pth").exists()


@pytest.mark.slow
def test_missing_file_wrong_width_wrong_file_and_wrong_architecture_are_named(vgg16_file, tmp_path):
    path, _ = vgg16_file
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model("ssd300", 21, backbone_file=str(tmp_path / "absent.pth"), **V1)
    with pytest.raises(ValueError, match="need width=1.0"):
        build_model("ssd300", 21, width=0.5, backbone_file=str(path), **V1)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth is not a readable PyTorch state dict"):
        build_model("ssd300", 21, backbone_file=str(junk), **V1)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="resnet.pth: not a VGG16 state dict"):
        build_model("ssd300", 21, backbone_file=str(tmp_path / "resnet.pth"), **V1)
    with pytest.raises(ValueError, match="ssd300: no backbone weights 'resnet101_imagenet1k_v1'"):
        build_model("ssd300", 21, pretrained_backbone="resnet101_imagenet1k_v1")


@pytest.mark.slow
def _reduced_fc() -> dict:
    """Random weights in ssd.pytorch's vgg16_reducedfc.pth layout: fc6 at 31, fc7 at 33, 1024 channels."""
    return {
        "31.weight": torch.randn(1024, 512, 3, 3),
        "31.bias": torch.randn(1024),
        "33.weight": torch.randn(1024, 1024, 1, 1),
        "33.bias": torch.randn(1024),
    }


def _nan_classifier_features(tmp_path):
    """torchvision's IMAGENET1K_FEATURES port in layout: valid conv layers, NaN classifier."""
    state = torchvision.models.vgg16(weights=None).state_dict()
    for key in [k for k in state if k.startswith("classifier.")]:
        state[key] = torch.full_like(state[key], float("nan"))
    torch.save(state, tmp_path / "features.pth")
    return state


def test_caffe_features_with_xavier_asked_leave_fc6_fc7_to_their_initialisation(tmp_path):
    """fc_weights: xavier. The convs load, the NaN classifier does not reach fc6/fc7 (they keep the Xavier values a
    model built with the same seed has), and nothing is downloaded."""
    state = _nan_classifier_features(tmp_path)
    torch.manual_seed(5)
    plain = build_model("ssd300", 21)
    torch.manual_seed(5)
    model = build_model(
        "ssd300",
        21,
        pretrained_backbone="vgg16_caffe",
        backbone_file=str(tmp_path / "features.pth"),
        fc_weights="xavier",
    )
    assert torch.equal(model.trunk.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.trunk.fc[1].weight, plain.trunk.fc[1].weight)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize(
    "model",
    ["ssd300", pytest.param("fssd300", marks=pytest.mark.slow), pytest.param("refinedet320", marks=pytest.mark.slow)],
)
def test_caffe_vgg16_loads_the_published_reduced_fc6_fc7_by_default(tmp_path, monkeypatch, model):
    """Every VGG16 detector of the SSD family starts from Caffe's reduced fc6/fc7, as its own scripts do: the file
    the backbone names (ssd.pytorch's vgg16_reducedfc.pth, fc6 at 31, fc7 at 33) is fetched unless fc_weights says
    otherwise; here a file of that layout served from 127.0.0.1 in its place."""
    import dataclasses

    from scbloss.detectors import backbones

    _nan_classifier_features(tmp_path)
    fc = _reduced_fc()
    torch.save(fc, tmp_path / "vgg16_reducedfc.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server:
        server.files["/amdegroot-models/vgg16_reducedfc.pth"] = (tmp_path / "vgg16_reducedfc.pth").read_bytes()
        published = backbones.BACKBONE_WEIGHTS["vgg16_caffe"]
        assert published.fc_url == "https://s3.amazonaws.com/amdegroot-models/vgg16_reducedfc.pth"
        local = dataclasses.replace(published, fc_url=f"{server.base}/amdegroot-models/vgg16_reducedfc.pth")
        monkeypatch.setitem(backbones.BACKBONE_WEIGHTS, "vgg16_caffe", local)
        built = build_model(model, 21, pretrained_backbone="vgg16_caffe", backbone_file=str(tmp_path / "features.pth"))
    assert torch.equal(built.trunk.fc[1].weight, fc["31.weight"]) and torch.equal(built.trunk.fc[3].bias, fc["33.bias"])


@pytest.mark.slow
def test_caffe_reduced_fc_weights_fill_fc6_fc7(tmp_path):
    """ssd.pytorch's vgg16_reducedfc.pth layout: fc6 at 31, fc7 at 33, already 1024 channels."""
    state = torchvision.models.vgg16(weights=None).state_dict()
    fc = _reduced_fc()
    torch.save(state, tmp_path / "features.pth")
    torch.save(fc, tmp_path / "reducedfc.pth")
    model = build_model(
        "ssd300",
        21,
        pretrained_backbone="vgg16_caffe",
        backbone_file=str(tmp_path / "features.pth"),
        fc_weights=str(tmp_path / "reducedfc.pth"),
    )
    assert torch.equal(model.trunk.fc[1].weight, fc["31.weight"]) and torch.equal(model.trunk.fc[3].bias, fc["33.bias"])
    torch.save({"31.weight": fc["31.weight"]}, tmp_path / "half.pth")
    with pytest.raises(ValueError, match="half.pth: not Caffe's reduced fc6/fc7 .*missing 31.bias"):
        build_model(
            "ssd300",
            21,
            pretrained_backbone="vgg16_caffe",
            backbone_file=str(tmp_path / "features.pth"),
            fc_weights=str(tmp_path / "half.pth"),
        )


@pytest.mark.slow
def test_mmcvs_caffe_vgg16_with_its_fc6_fc7_loads_from_a_url(tmp_path, monkeypatch):
    """open-mmlab://vgg16_caffe as mmcv stores it: mmdetection SSDVGG's names, fc6 at features.31 and fc7 at
    features.33, wrapped in {"state_dict": ...}; served as torch.hub names files, hash-checked."""
    conv = torchvision.models.vgg16(weights=None).features.state_dict()
    state = {f"features.{key}": value for key, value in conv.items()}
    state |= {
        "features.31.weight": torch.randn(1024, 512, 3, 3),
        "features.31.bias": torch.randn(1024),
        "features.33.weight": torch.randn(1024, 1024, 1, 1),
        "features.33.bias": torch.randn(1024),
    }
    staging = tmp_path / "staging.pth"
    torch.save({"state_dict": state}, staging)
    name = f"vgg16_caffe-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with LocalServer() as server:
        server.files[f"/{name}"] = staging.read_bytes()
        model = build_model("ssd300", 21, pretrained_backbone="vgg16_caffe_mmcv", backbone_file=f"{server.base}/{name}")
    trunk = model.trunk
    assert torch.equal(trunk.features[0].weight, state["features.0.weight"])
    assert torch.equal(trunk.features[28].bias, state["features.28.bias"])
    assert torch.equal(trunk.fc[1].weight, state["features.31.weight"])
    assert torch.equal(trunk.fc[3].bias, state["features.33.bias"])
    del state["features.33.bias"]
    torch.save(state, tmp_path / "no_fc7_bias.pth")
    with pytest.raises(ValueError, match="no_fc7_bias.pth: not mmcv's VGG16 .*missing features.33.bias"):
        build_model(
            "ssd300", 21, pretrained_backbone="vgg16_caffe_mmcv", backbone_file=str(tmp_path / "no_fc7_bias.pth")
        )


def test_mmcvs_caffe_vgg16_takes_the_paper_codes_normalisation():
    from scbloss.data.transforms import normalization
    from scbloss.detectors.backbones import backbone_weights

    mean, std = normalization(backbone_weights("vgg16_caffe_mmcv").normalization)
    assert [round(m * 255, 3) for m in mean] == [123.675, 116.28, 103.53] and std == (1 / 255,) * 3
