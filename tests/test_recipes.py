"""The recipe cards (docs/recipes.md) are what the paper config runs: each card's machine-readable block equals
the train.yaml that Snakemake resolves from config/paper.yaml for every paper run of that detector."""

import re

import pytest
import yaml

from scbloss import detectors, recipes
from scbloss.data.registry import dataset_spec

from conftest import REPO, run_snakemake

KEYS = ("pretrained_backbone", "batch_size", "lr", "warmup_iters", "max_iter", "lr_steps")  # every card lists them
OPTIONAL = {"accumulate_grad": 1, "freeze": None}  # a card lists these only where they are not the default


def _cards() -> dict[tuple[str, str], dict]:
    """(model, recipe) -> {family: values}; a card without a recipe is the ``original`` one."""
    text = (REPO / "docs" / "recipes.md").read_text()
    blocks = re.findall(r"<!-- recipe-card -->\n```yaml\n(.*?)```", text, re.DOTALL)
    cards = [yaml.safe_load(block) for block in blocks]
    return {(card.pop("model"), card.pop("recipe", "original")): card for card in cards}


def _resolved(values: dict) -> dict:
    resolved = {key: values.get(key, 0 if key == "warmup_iters" else None) for key in KEYS}
    resolved.update({key: values[key] for key, default in OPTIONAL.items() if values.get(key, default) != default})
    return resolved


def _derived(values: dict) -> dict:
    """What the code derives from a run's model, recipe and dataset family (scbloss.recipes): its augmentation and
    the init of its new layers, where they are not the recipe's own (a card lists them only there)."""
    settings, spec = recipes.recipe(values["recipe"]), detectors.get(values["model"])
    family = dataset_spec(values["dataset"]["kind"]).prior_family
    derived = {"augmentation": settings.augmentation_for(spec, family), "init": settings.init_for(spec, family)}
    defaults = {"augmentation": settings.augmentation, "init": None}
    return {key: value for key, value in derived.items() if value != defaults[key]}


@pytest.mark.slow
def test_every_paper_run_trains_the_recipe_of_its_card(tmp_path):
    cards = _cards()
    models = {"ssd300", "ssd512", "fssd300", "fssd512", "dssd321", "dssd513", "refinedet320"}
    models |= {"ssd321_resnet", "ssd513_resnet"}  # DSSD's first stages
    assert set(cards) == {(model, "original") for model in models} | {("ssd300", "authors"), ("ssd512", "authors")}
    code, output = run_snakemake("-n", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}")
    assert code == 0, output[-3000:]
    runs = sorted(set(re.findall(r"runs/([a-z0-9_-]+-s\d+)/train\.yaml", output)))
    assert len(runs) == 26  # the tables' 22 and the first stages of DSSD321 / DSSD513, with and without SCB
    targets = [str(tmp_path / "runs" / run / "train.yaml") for run in runs]
    code, output = run_snakemake(
        "--cores", "1", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}", "--", *targets
    )
    assert code == 0, output[-3000:]
    checked = set()
    for run, target in zip(runs, targets):
        values = yaml.safe_load(open(target).read())
        family = values["dataset"]["kind"]
        card = cards[values["model"], values["recipe"]].get(family)
        assert card is not None, f"{run}: docs/recipes.md has no {family} card for {values['model']}"
        assert {**_resolved(values), **_derived(values)} == card, (run, _resolved(values), _derived(values), card)
        checked.add((values["model"], values["recipe"], family))
        if values["model"].startswith("dssd"):  # stage 2 starts from the stage-1 run of its own row
            first = re.sub(r"^(\w+)-dssd(\d+)-", r"\1-ssd\2_resnet-", run)
            assert first in runs and values["init_from"] == str(tmp_path / "runs" / first / "model_final.pt"), run
            assert values["init_modules"] == values["freeze"] == ["trunk", "extras"]
    assert len(checked) == 11  # Tables 1-9 train 3 detectors on VOC and 6 on COCO, DSSD after 2 SSD-ResNets
    assert {recipe for _, recipe, _ in checked} == {"authors", "original"}


def test_a_row_choosing_the_other_recipe_trains_that_recipes_card():
    """The SSD rows of the paper config train by `authors`; a table row may choose `original`: the composition then
    gives the original card's values (what every paper run of FSSD, DSSD and RefineDet already checks)."""
    from scbloss.experiments.matrix import Run
    from scbloss.experiments.run_config import checked_train_config

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for (model, recipe), card in _cards().items():
        for family, expected in card.items():
            values = checked_train_config(config, Run(family, model, "scb", recipe=recipe))
            resolved = {**_resolved(values), **_derived(values)}
            assert values["recipe"] == recipe and resolved == expected, (model, recipe, family)


def test_the_authors_schedule_is_their_epochs_in_iterations_of_64_images():
    """SCB_Loss trains 24 epochs of a repeated dataset at 8 images x 8 GPUs, the lr x0.1 after epochs 16 and 20
    (VOC, RepeatDataset x10 of VOC07+12 trainval's 16,551 images) or 16 and 22 (COCO, x5 of train2017's 117,266
    annotated images); an epoch is the repeated images in whole batches of 64."""
    cards = _cards()
    for family, images, repeat, steps in (("voc", 16551, 10, (16, 20)), ("coco", 117266, 5, (16, 22))):
        per_epoch = -(-images * repeat // 64)
        expected = {"max_iter": 24 * per_epoch, "lr_steps": [step * per_epoch for step in steps], "batch_size": 64}
        for model in ("ssd300", "ssd512"):
            card = cards[model, "authors"][family]
            assert {key: card[key] for key in expected} == expected, (model, family)
