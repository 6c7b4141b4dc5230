"""The typed training config: one definition of every train key, which the pipeline's schema is made from."""

import dataclasses
import json

import pytest
import yaml

from scbloss.data.registry import DATASETS
from scbloss.detection.weighting import APPLY_TO, WEIGHTINGS
from scbloss.detectors.backbones import BACKBONE_WEIGHTS
from scbloss.engine import config
from scbloss.engine.config import SCHEMA, ConfigError, DatasetConfig, TrainConfig, config_from_dict

PER_RUN = {"dataset", "model", "weighting", "variant", "init_from"}  # set by the run matrix (a row, its stages)


def test_schema_train_block_equals_the_config_key_by_key():
    written = yaml.safe_load(SCHEMA.read_text())["definitions"]["train_values"]["properties"]
    generated = config.train_values_schema()
    assert list(written) == list(generated)
    for key, schema in generated.items():
        assert written[key] == schema, key
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(written) == set(fields) - PER_RUN
    # independently of the generator: a range, an optional number, choices owned by registries, each default
    assert written["momentum"] == {**written["momentum"], "type": "number", "minimum": 0, "exclusiveMaximum": 1}
    assert written["clip_grad_norm"]["type"] == ["number", "null"]
    assert written["lr_steps"]["items"] == {"type": "integer", "minimum": 1}
    assert written["pretrained_backbone"]["enum"] == [*BACKBONE_WEIGHTS, None]
    assert written["apply_to"]["enum"] == ["cls", "cls+loc"]
    assert written["compile"]["enum"] == ["auto", True, False]
    assert written["lr"]["description"].endswith("(default: 0.001)")
    assert written["lr_steps"]["description"].endswith("(default: [80000, 100000])")
    assert written["precision"]["description"].endswith('(default: "auto")')
    assert written["pretrained"]["description"].endswith("(default: null)")
    for key in written:
        value = config.default_of(fields[key])
        assert written[key]["description"].endswith(f"(default: {json.dumps(value)})"), key


def test_schema_values_pass_the_config_and_out_of_range_ones_fail_both(tmp_path):
    import jsonschema

    schema = {"type": "object", "properties": config.train_values_schema(), "additionalProperties": False}
    good = {"lr": 0.002, "lr_steps": [5, 9], "compile": True, "pretrained_backbone": None, "apply_to": "cls+loc"}
    jsonschema.validate(good, schema)
    config_from_dict({**good, "dataset": {"kind": "voc", "root": "x"}})
    for bad in ({"momentum": 1.0}, {"apply_to": "loc"}, {"lr_steps": [0]}, {"batch_norm": "no"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(config.ConfigError, match=next(iter(bad))):
            config_from_dict({**bad, "dataset": {"kind": "voc", "root": "x"}})


def test_choice_lists_come_from_the_registries_that_own_them():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert config.choices_of(fields["weighting"]) == tuple(WEIGHTINGS)
    assert config.choices_of(fields["apply_to"]) == APPLY_TO
    assert config.choices_of(fields["pretrained_backbone"]) == tuple(BACKBONE_WEIGHTS)
    kind = {f.name: f for f in dataclasses.fields(DatasetConfig)}["kind"]
    assert (
        config.choices_of(kind) == tuple(DATASETS) == ("voc", "coco", "toy_voc", "toy_coco", "voc_folder", "coco_json")
    )


@pytest.mark.parametrize(
    ("kind", "split"),
    [
        ("voc", "trainval"),
        ("toy_voc", "trainval"),
        ("voc_folder", "trainval"),
        ("coco", "train"),
        ("coco_json", "train"),
    ],
)
def test_an_empty_split_is_the_kinds_training_split(kind, split):
    assert DatasetConfig(kind=kind, root="x").split == split


def test_a_field_of_a_type_nobody_checks_is_an_error_at_import():
    @dataclasses.dataclass
    class Unchecked:
        sizes: set[int] = config.option(doc="a set", factory=set)

    with pytest.raises(TypeError, match=r"Unchecked.sizes: no converter for the type set\[int\]"):
        config._check_declared_types(Unchecked)


def test_a_schedule_that_cannot_apply_is_refused_and_an_endless_warm_up_warned(caplog):
    dataset = {"kind": "voc", "root": "x"}
    with pytest.raises(config.ConfigError, match=r"run.yaml: lr_steps: must be increasing, got \[8, 4\]"):
        config_from_dict({"dataset": dataset, "lr_steps": [8, 4], "max_iter": 10}, "run.yaml")
    with pytest.raises(config.ConfigError, match="lr_steps: 60 is not below max_iter 60 .it would never apply"):
        config_from_dict({"dataset": dataset, "lr_steps": [50, 60], "max_iter": 60}, "run.yaml")
    config_from_dict({"dataset": dataset, "max_iter": 60}, "run.yaml")  # the default steps: no decay in a short run
    config_from_dict({"dataset": dataset, "warmup_iters": 500, "max_iter": 60}, "run.yaml")
    assert "run.yaml: warmup_iters 500 exceeds max_iter 60: the warm-up never ends" in caplog.text


def test_the_authors_recipe_exists_for_ssd_only():
    """SCB_Loss holds SSD300 and SSD512 configs and nothing else: another detector by it is refused, naming both."""
    from scbloss.recipes import RECIPES

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert config.choices_of(fields["recipe"]) == tuple(RECIPES) == ("original", "authors")
    dataset = {"kind": "toy_voc", "root": "toy"}
    assert config_from_dict({"dataset": dataset, "model": "ssd512", "recipe": "authors"}).recipe == "authors"
    with pytest.raises(ConfigError, match=r"recipe: the authors recipe exists for ssd300, ssd512 only, not fssd300"):
        config_from_dict({"dataset": dataset, "model": "fssd300", "recipe": "authors"})


def test_torchvisions_ssd300_starts_only_the_original_recipe():
    with pytest.raises(ConfigError, match=r"pretrained: torchvision's SSD300 was trained with the original recipe's"):
        config_from_dict(
            {"dataset": {"kind": "toy_coco", "root": "t"}, "recipe": "authors", "pretrained": "torchvision_coco"}
        )
