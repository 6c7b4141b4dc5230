"""The recipe cards (docs/recipes.md) are what the paper config runs: each card's machine-readable block equals
the train.yaml that Snakemake resolves from config/paper.yaml for every paper run of that detector."""

import re

import pytest
import yaml

from conftest import REPO, run_snakemake

KEYS = ("pretrained_backbone", "batch_size", "lr", "warmup_iters", "max_iter", "lr_steps")


def _cards() -> dict[str, dict]:
    text = (REPO / "docs" / "recipes.md").read_text()
    blocks = re.findall(r"<!-- recipe-card -->\n```yaml\n(.*?)```", text, re.DOTALL)
    cards = [yaml.safe_load(block) for block in blocks]
    return {card.pop("model"): card for card in cards}


@pytest.mark.slow
def test_every_paper_run_trains_the_recipe_of_its_card(tmp_path):
    cards = _cards()
    assert set(cards) == {"ssd300", "ssd512", "fssd300", "fssd512", "dssd321", "dssd513", "refinedet320"}
    code, output = run_snakemake("-n", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}")
    assert code == 0, output[-3000:]
    runs = sorted(set(re.findall(r"runs/([a-z0-9_-]+-s\d+)/train\.yaml", output)))
    assert len(runs) == 22
    targets = [str(tmp_path / "runs" / run / "train.yaml") for run in runs]
    code, output = run_snakemake(
        "--cores", "1", "--configfile", "config/paper.yaml", "--config", f"results={tmp_path}", "--", *targets
    )
    assert code == 0, output[-3000:]
    checked = set()
    for run, target in zip(runs, targets):
        values = yaml.safe_load(open(target).read())
        family = values["dataset"]["kind"]
        card = cards[values["model"]].get(family)
        assert card is not None, f"{run}: docs/recipes.md has no {family} card for {values['model']}"
        resolved = {key: values.get(key, 0 if key == "warmup_iters" else None) for key in KEYS}
        assert resolved == card, (run, resolved, card)
        checked.add((values["model"], family))
    assert len(checked) == 9  # Tables 1-9 train 3 detectors on VOC and 6 on COCO
