"""Training in stages (DSSD's): accumulated gradients, frozen modules, and a run started from an earlier run."""

import copy

import pytest
import torch

from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.engine.checkpoint import CheckpointError, load_trained
from scbloss.engine.config import ConfigError, config_from_dict
from scbloss.engine.stages import freeze_modules, load_modules
from scbloss.engine.train import train
from scbloss.engine.trainer import Trainer
from scbloss.models import build_criterion, build_model


def _batch(images: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    pictures = torch.randn(images, 3, 300, 300, generator=generator)
    targets = []
    for index in range(images):
        corner = torch.rand(2, generator=generator) * 0.5
        size = 0.1 + torch.rand(2, generator=generator) * 0.4
        boxes = torch.cat([corner, corner + size]).unsqueeze(0)
        if index % 2:  # a second, small object in every other image
            boxes = torch.cat([boxes, torch.tensor([[0.6, 0.6, 0.68, 0.66]])])
        targets.append({"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.long)})
    return pictures, targets


def _one_step(model, criterion, batch, accumulate: int) -> None:
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=5e-4
    )
    trainer = Trainer(
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        lr_at=lambda iteration: 0.01,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        loader=[batch],
        prepare=lambda b: b,
        start_iter=0,
        max_iter=1,
        accumulate=accumulate,
    )
    trainer.train()
    return trainer


@pytest.mark.slow
def test_two_accumulated_passes_step_as_one_batch_normalized_per_half():
    """Caffe's iter_size: two passes of 2 images, each normalized by its own positives, averaged, equal one pass of
    4 whose loss normalizes each 2 images by their own positives and averages the two (images_per_normalizer).
    In float64, so that the comparison sees the arithmetic, not float32's rounding of a different summation order."""
    torch.manual_seed(0)
    model = build_model("ssd300", 3, width=0.125).double()  # no BatchNorm: a pass's statistics are not the batch's
    twin = copy.deepcopy(model)
    images, targets = _batch(4)
    batch = images.double(), [{"boxes": t["boxes"].double(), "labels": t["labels"]} for t in targets]
    accumulated = _one_step(model, build_criterion("ssd300", "scb"), batch, accumulate=2)
    whole = _one_step(twin, build_criterion("ssd300", "scb", images_per_normalizer=2), batch, accumulate=1)
    for (name, ours), theirs in zip(model.named_parameters(), twin.parameters()):
        scale = theirs.grad.abs().max()
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-5 * scale, msg=name)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0, msg=name)
    assert accumulated.losses["num_pos"] == whole.losses["num_pos"] > 0  # counts add up over the passes
    for key in ("loss_cls", "loss_loc"):  # the logged terms: the passes' mean, which is the grouped loss
        torch.testing.assert_close(accumulated.losses[key], whole.losses[key], rtol=1e-5, atol=0)
    assert accumulated.batch_images == 4


def test_a_batch_that_does_not_split_into_equal_passes_is_refused():
    model = build_model("ssd300", 3, width=0.125)
    with pytest.raises(ValueError, match="5 images does not split into 2 equal passes"):
        _one_step(model, build_criterion("ssd300", "none"), _batch(5), accumulate=2)


@pytest.mark.slow
def test_a_later_stage_takes_the_named_modules_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    first = build_model("ssd321_resnet", 3, width=0.125, dataset="coco")
    torch.save({"model": first.state_dict(), "meta": {}}, tmp_path / "model_final.pt")
    torch.manual_seed(1)
    second = build_model("dssd321", 3, width=0.125, dataset="coco")
    fresh_head = second.head.state_dict()["loc.0.weight"].clone()
    copied = load_modules(second, tmp_path / "model_final.pt", ["trunk", "extras"])
    assert copied == len(first.trunk.state_dict()) + len(first.extras.state_dict())
    for name in ("trunk", "extras"):
        for key, value in getattr(first, name).state_dict().items():
            assert torch.equal(getattr(second, name).state_dict()[key], value), (name, key)
    # the heads have the same shapes in both stages and stay new, as Caffe DSSD's renamed ones do
    assert first.head.state_dict()["loc.0.weight"].shape == fresh_head.shape
    assert torch.equal(second.head.state_dict()["loc.0.weight"], fresh_head)


def test_a_stage_file_without_a_module_or_with_other_shapes_is_refused_naming_it(tmp_path):
    first = build_model("ssd321_resnet", 3, width=0.125, dataset="coco")
    state = {k: v for k, v in first.state_dict().items() if not k.startswith("extras.")}
    torch.save({"model": state}, tmp_path / "partial.pt")
    second = build_model("dssd321", 3, width=0.125, dataset="coco")
    with pytest.raises(CheckpointError, match=r"partial\.pt: no extras\..* for init_modules 'extras'"):
        load_modules(second, tmp_path / "partial.pt", ["extras"])
    wider = build_model("ssd321_resnet", 3, width=0.25, dataset="coco")
    torch.save({"model": wider.state_dict()}, tmp_path / "wider.pt")
    with pytest.raises(CheckpointError, match=r"wider\.pt: trunk\..* has shape"):
        load_modules(second, tmp_path / "wider.pt", ["trunk"])
    with pytest.raises(ValueError, match="freeze: DSSD has no module 'encoder'"):
        freeze_modules(second, ["encoder"])


def test_init_from_and_init_modules_come_together():
    dataset = {"kind": "toy_voc", "root": "x"}
    with pytest.raises(ConfigError, match="init_from and init_modules: give both"):
        config_from_dict({"dataset": dataset, "init_from": "a/model_final.pt"})
    config = config_from_dict(
        {"dataset": dataset, "init_from": "a/model_final.pt", "init_modules": ["trunk"], "accumulate_grad": 2}
    )
    assert config.accumulate_grad == 2 and config.freeze is None
    with pytest.raises(ConfigError, match="accumulate_grad: must be >= 1"):
        config_from_dict({"dataset": dataset, "accumulate_grad": 0})


@pytest.mark.slow
def test_a_second_stage_trains_from_the_first_and_evaluation_reads_it(tmp_path):
    """`scbloss train` twice, as the DAG chains DSSD: the second run's frozen trunk and extras are the first run's
    final weights, unchanged by its steps (with accumulated passes), and its model file loads for evaluation."""
    toy = generate_toy(tmp_path / "toy", ToyConfig(train_images=4, test_images=2, seed=1))
    common = {
        "width": 0.125,
        "dataset": {"kind": "toy_coco", "root": str(toy), "split": "train"},
        "batch_size": 2,
        "max_iter": 2,
        "lr_steps": [],
        "num_workers": 0,
        "log_every": 1,
    }
    first = train(config_from_dict({**common, "model": "ssd321_resnet"}), tmp_path / "first")
    second_config = config_from_dict(
        {
            **common,
            "model": "dssd321",
            "accumulate_grad": 2,
            "init_from": str(first),
            "init_modules": ["trunk", "extras"],
            "freeze": ["trunk", "extras"],
        }
    )
    second = train(second_config, tmp_path / "second")
    theirs = torch.load(first, weights_only=True)["model"]
    ours = torch.load(second, weights_only=True)["model"]
    kept = [key for key in theirs if key.startswith(("trunk.", "extras.")) and "num_batches" not in key]
    assert kept and all(torch.equal(ours[key], theirs[key]) for key in kept)
    model, meta = load_trained(second)
    assert type(model).__name__ == "DSSD" and meta.iterations == 2
    statistics = [key for key in kept if key.endswith("running_var")]
    assert statistics and all(model.state_dict()[key].equal(theirs[key]) for key in statistics)
