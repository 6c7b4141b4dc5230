"""`scbloss show-matching`: M counted independently of the matcher, W(M) by its formula, the figure, the rule."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torchvision.ops import box_iou

from scbloss import detectors, experiments
from scbloss.cli import main
from scbloss.data import load_dataset
from scbloss.data.records import DetectionSet, ImageRecord
from scbloss.detection.priors import generate_priors
from scbloss.engine.show_matching import image_index, show_matching

from conftest import REPO, run_snakemake, toy_config

WIDTH, HEIGHT = 600, 300  # resized to SSD300's 300 x 300 input: x halves, y stays
# 0-based pixel boxes; against SSD300's VOC priors no prior overlaps two objects by 0.5 and the tiny third object
# overlaps none by 0.5 (checked below), so M is counted per object on its own.
BOXES = [[30, 20, 270, 260], [330, 40, 420, 130], [520, 250, 532, 262], [450, 150, 590, 200]]
DIFFICULT = [100, 100, 200, 200]  # not counted: absent from the table
CLASSES = ["cat", "dog"]
LABELS = ["cat", "dog", "dog", "cat"]


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory):
    """A VOC-layout folder of one 600 x 300 image holding BOXES and a difficult object."""
    root = tmp_path_factory.mktemp("one") / "VOCone"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "JPEGImages" / "000001.jpg")
    objects = [(label, box, 0) for label, box in zip(LABELS, BOXES)] + [("cat", DIFFICULT, 1)]
    xml = "".join(
        f"<object><name>{label}</name><difficult>{difficult}</difficult><bndbox>"
        + "".join(f"<{tag}>{value + 1}</{tag}>" for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "</bndbox></object>"
        for label, box, difficult in objects
    )
    (root / "Annotations" / "000001.xml").write_text(
        f"<annotation><filename>000001.jpg</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
        f"<depth>3</depth></size>{xml}</annotation>"
    )
    (root / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    return root


def _show(voc_folder, out, *options):
    args = ["show-matching", "--dataset", "voc_folder", "--root", str(voc_folder), "--classes", ",".join(CLASSES)]
    args += ["--split", "test", "--model", "ssd300", "--image", "000001", "--out", str(out), *options]
    assert main(args) == 0
    return pd.read_csv(f"{out}.csv", dtype={"image": str})


def _independent_matches() -> list[int]:
    """M by hand: the priors an object overlaps by IoU >= 0.5, plus its best prior (the matcher's forced one)."""
    priors = generate_priors(detectors.get("ssd300").layout("voc"))
    iou = box_iou(torch.tensor(BOXES, dtype=torch.float32) / torch.tensor([WIDTH, HEIGHT] * 2), priors)
    above = iou >= 0.5
    best = iou.argmax(dim=1)
    # the premise that lets each object be counted alone: no prior shared by two objects, above or forced
    assert (above.sum(dim=0) <= 1).all() and len(set(best.tolist())) == len(BOXES)
    assert not any(above[other, best[own]] for own in range(len(BOXES)) for other in range(len(BOXES)) if other != own)
    counts = [int(row.sum()) + int(not row[b]) for row, b in zip(above, best)]
    assert counts[2] == 1 and min(counts[:2] + counts[3:]) > 1  # the tiny object holds its forced prior only
    return counts


@pytest.mark.parametrize(
    ("weighting", "alpha", "beta", "formula"),
    [
        ("scb", 0.5, 2.0, lambda m: 2.0 * (math.log(m) + 0.5) / m),
        ("inv_sqrt", 1.0, 3.0, lambda m: 1 / math.sqrt(m)),
    ],
    ids=["scb", "inv_sqrt"],
)
def test_m_is_the_count_by_hand_and_w_its_formula(voc_folder, weighting, alpha, beta, formula):
    data = load_dataset("voc_folder", voc_folder, "test", classes=CLASSES)
    table, matched_priors = show_matching(data, [0], detectors.get("ssd300").layout("voc"), weighting, alpha, beta)
    counts = _independent_matches()
    assert table["object"].tolist() == [0, 1, 2, 3]  # the difficult object (index 4) is not counted
    assert table["image"].tolist() == ["000001"] * 4 and table["class"].tolist() == LABELS
    assert table["matches"].tolist() == counts == [len(priors) for priors in matched_priors]
    assert table["weight"].tolist() == pytest.approx([formula(m) for m in counts], abs=1e-4)
    scale = np.array([300 / WIDTH, 300 / HEIGHT] * 2)
    np.testing.assert_allclose(table[["x1", "y1", "x2", "y2"]].to_numpy(), np.array(BOXES) * scale, atol=0.01)
    assert table["bucket"].tolist() == ["large", "medium", "small", "medium"]  # 120x240, 45x90, 6x12, 70x50


@pytest.mark.slow  # 4-5 s on the busy 2-core machine, most of it importing matplotlib and drawing
def test_the_command_writes_the_table_and_draws_the_figure(voc_folder, tmp_path):
    table = _show(voc_folder, tmp_path / "sqrt", "--weighting", "inv_sqrt")
    counts = _independent_matches()
    assert table["matches"].tolist() == counts
    assert table["weight"].tolist() == pytest.approx([1 / math.sqrt(m) for m in counts], abs=1e-4)
    png = tmp_path / "sqrt.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[0] > 300 and pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_images_are_named_by_name_position_or_what_they_hold():
    layout = detectors.get("ssd300").layout("voc")

    def record(name, boxes):
        boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
        flags = np.zeros(len(boxes), dtype=bool)
        return ImageRecord(0, None, 300, 300, boxes, np.ones(len(boxes), dtype=np.int64), flags, flags, name)

    data = DetectionSet(
        [
            record("000007", [[0, 0, 100, 100], [0, 0, 50, 50]]),
            record("000003", [[0, 0, 10, 10]]),
            record("000005", []),
            record("000009", [[0, 0, 299, 299], [0, 0, 20, 20], [5, 5, 30, 30]]),
        ],
        ["a"],
        "voc",
    )
    assert [image_index(data, key, layout) for key in ("000003", "1", "2")] == [1, 1, 2]
    picks = [image_index(data, key, layout) for key in ("smallest-object", "largest-object", "most-objects")]
    assert picks == [1, 3, 3]
    with pytest.raises(ValueError, match="past the split's 4 images"):
        image_index(data, "4", layout)
    with pytest.raises(ValueError, match="no image named 'cat'"):
        image_index(data, "cat", layout)


def test_the_rule_draws_one_figure_per_dataset_model_and_recipe_only_when_asked():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = experiments.runs_for_tables(experiments.table_specs(config), 1)
    names = [entry["name"] for entry in experiments.show_matching_entries(config, runs)]
    # 3 VOC + 6 COCO models, and the headline's SSD300 on the toy shapes
    assert len(names) == len(set(names)) == 10 and {"voc-refinedet320-original", "shapes-ssd300-original"} <= set(names)
    config["figures"] = {"every_trained_model": True}
    assert experiments.show_matching_entries(config, runs) == []


@pytest.mark.slow
def test_the_default_dag_draws_them(tmp_path):
    code, output = run_snakemake("-n", "-p", "--configfile", str(toy_config(tmp_path)))
    assert code == 0, output[-3000:]
    stats = output[output.index("Job stats:") :].splitlines()
    assert ["show_matching", "9"] in [line.split() for line in stats], stats
    for name in ("voc-ssd300-original", "coco-dssd513-original"):
        assert f"{tmp_path}/results/figures/show_matching/{name}.png" in output
    command = next(line for line in output.splitlines() if "scbloss show-matching" in line)
    assert "--image smallest-object --image largest-object --image most-objects" in command
    assert "--weighting scb --alpha 1.0 --beta 3.0" in command
