"""Your own dataset: a VOC-layout folder or a COCO JSON per split, through the readers, data check and the DAG."""

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import yaml

from scbloss.data import DatasetError, load_dataset
from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.experiments import Run, comparison_specs, dataset_entry, train_config

from conftest import REPO, run_snakemake


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The toy set written out as a user's folders: VOC layout and COCO JSONs."""
    return generate_toy(tmp_path_factory.mktemp("yours") / "toy", ToyConfig(train_images=8, test_images=4, seed=5))


def _voc_copy(folder, tmp_path):
    target = tmp_path / "shapes"
    shutil.copytree(folder / "VOCdevkit" / "VOC2007", target)
    return target


def test_a_voc_folder_reads_its_classes_from_the_annotations_sorted(folder, caplog):
    caplog.set_level(logging.INFO)
    data = load_dataset("voc_folder", folder / "VOCdevkit" / "VOC2007", "trainval")
    assert data.class_names == ["cross", "disc", "square", "triangle"] and len(data.records) == 8
    assert "4 classes read from the annotations, in this label order: cross, disc, square, triangle" in caplog.text
    given = load_dataset(
        "voc_folder", folder / "VOCdevkit" / "VOC2007", "test", classes=["triangle", "square", "disc", "cross"]
    )
    assert given.class_names[0] == "triangle"


def test_a_coco_json_split(folder):
    data = load_dataset(
        "coco_json",
        folder / "coco" / "val2017",
        "val",
        annotations=folder / "coco" / "annotations" / "instances_val2017.json",
    )
    assert len(data.records) == 4 and data.category_ids == [1, 3, 5, 7]


def test_errors_a_user_will_meet_name_the_file(folder, tmp_path, caplog):
    shapes = _voc_copy(folder, tmp_path)
    with pytest.raises(DatasetError, match=r"000001.xml: unknown class '\w+' \(expected one of disc, square\)"):
        load_dataset("voc_folder", shapes, "trainval", classes=["disc", "square"])
    (shapes / "ImageSets" / "Main" / "trainval.txt").write_text("999999\n")
    with pytest.raises(DatasetError, match="999999.xml: the split lists this image, but its annotation file"):
        load_dataset("voc_folder", shapes, "trainval")
    (shapes / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"empty.txt: the split lists no images"):
        load_dataset("voc_folder", shapes, "empty")
    coco = json.loads((folder / "coco" / "annotations" / "instances_val2017.json").read_text())
    (tmp_path / "gap.json").write_text(json.dumps(coco))  # ids 1, 3, 5, 7: gaps at 2, 4, 6
    caplog.set_level(logging.WARNING)
    load_dataset("coco_json", folder / "coco" / "val2017", "val", annotations=tmp_path / "gap.json")
    assert "gap.json: category ids are not consecutive (none for 2, 4, 6): labels 1..4 follow the ids' order" in (
        caplog.text
    )
    coco["images"], coco["annotations"] = [], []
    (tmp_path / "none.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match="none.json: the split lists no images"):
        load_dataset("coco_json", folder / "coco" / "val2017", "val", annotations=tmp_path / "none.json")


def _config(folder, **overrides):
    config = yaml.safe_load((REPO / "config" / "custom.example.yaml").read_text())
    config["data"]["shapes"]["path"] = str(folder / "VOCdevkit" / "VOC2007")
    config.update(overrides)
    return config


def test_a_comparison_table_per_detector_and_the_runs_behind_it(folder):
    config = _config(folder)
    specs = comparison_specs(config)
    assert [s["id"] for s in specs] == ["shapes-ssd300"] and specs[0]["split"] == "test"
    assert [c["key"] for c in specs[0]["columns"]][:2] == ["voc_map", "small@0.01"]
    assert (
        train_config(config, Run("shapes", "ssd300", "scb", "", 2))["dataset"]
        == dataset_entry(config, "shapes", "trainval")
        == {"kind": "voc_folder", "root": str(folder / "VOCdevkit" / "VOC2007"), "split": "trainval"}
    )


def test_the_custom_dag(folder, tmp_path):
    config = _config(folder, results=str(tmp_path / "results"))
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump(config))
    code, output = run_snakemake("-n", "--configfile", str(tmp_path / "custom.yaml"))
    assert code == 0, output[-3000:]
    stats = output[output.index("Job stats:") :]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}
    # two weightings x three seeds; the folder checked once; one figure and one comparison table; no paper summary
    assert counts == {
        "custom_data": 1,
        "run_config": 6,
        "train": 6,
        "curves": 6,
        "evaluate": 6,
        "match_stats": 1,
        "comparison_spec": 1,
        "table": 1,
        "all": 1,
        "total": 29,
    }, stats


def test_data_check_reports_on_your_folders(folder, tmp_path, capsys):
    from scbloss.cli import main

    shapes = _voc_copy(folder, tmp_path)
    assert main(["data", "check", str(shapes), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "## voc_folder/test: 4 images" in out and "## voc_folder/trainval: 8 images" in out
    assert main(["data", "check", str(shapes), "--classes", "disc,square", "--workers", "1"]) == 1
    assert "unknown class" in capsys.readouterr().out
    annotations = folder / "coco" / "annotations" / "instances_val2017.json"
    assert main(["data", "check", str(folder / "coco" / "val2017"), "--annotations", str(annotations)]) == 0
    assert "## coco_json/instances_val2017: 4 images" in capsys.readouterr().out


def test_a_split_file_names_one_image_per_line_spaces_included(folder, tmp_path):
    shapes = _voc_copy(folder, tmp_path)
    names = (shapes / "ImageSets" / "Main" / "test.txt").read_text().split()
    first = names[0]
    for suffix in (".xml", ".jpg"):
        kind = "Annotations" if suffix == ".xml" else "JPEGImages"
        (shapes / kind / f"{first}{suffix}").rename(shapes / kind / f"my photo {first}{suffix}")
    xml = shapes / "Annotations" / f"my photo {first}.xml"
    xml.write_text(xml.read_text().replace(f"{first}.jpg", f"my photo {first}.jpg"))
    (shapes / "ImageSets" / "Main" / "test.txt").write_text("\n".join([f"my photo {first}", *names[1:]]) + "\n\n")
    data = load_dataset("voc_folder", shapes, "test")
    assert len(data.records) == len(names) and data.records[0].file.name == f"my photo {first}.jpg"


def test_images_too_small_for_the_training_crops_are_named_before_training(folder, tmp_path):
    """A 1x1 image passed the checks and then divided by zero inside the min-IoU crop (and hung the workers)."""
    from PIL import Image

    from scbloss.data.check import check_folder
    from scbloss.data.loader import DetectionDataset, EncodedDetectionDataset
    from scbloss.data.transforms import MIN_TRAIN_SIDE, train_transform

    assert MIN_TRAIN_SIDE == 4  # int(0.3 * 4) = 1 pixel is the smallest crop side; int(0.3 * 3) = 0
    shapes = _voc_copy(folder, tmp_path)
    name = (shapes / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
    Image.new("RGB", (1, 1)).save(shapes / "JPEGImages" / f"{name}.jpg")
    xml = shapes / "Annotations" / f"{name}.xml"
    text = xml.read_text()
    for tag in ("width", "height"):
        text = re.sub(f"<{tag}>\\d+</{tag}>", f"<{tag}>1</{tag}>", text)
    xml.write_text(re.sub(r"<(xmin|ymin|xmax|ymax)>\d+</\1>", r"<\1>0</\1>", text))
    _, problems = check_folder(shapes, workers=1, progress=False)
    assert (
        f"{shapes / 'JPEGImages' / name}.jpg: image is 1x1, smaller than the 4-pixel side the training crops need"
        in problems
    )
    data = load_dataset("voc_folder", shapes, "trainval", problems=[])
    index = next(i for i, r in enumerate(data.records) if r.width == 1)
    for dataset in (DetectionDataset(data, train_transform(300), train=True), EncodedDetectionDataset(data, 300)):
        with pytest.raises(DatasetError, match="image is 1x1, smaller than the 4-pixel side"):
            dataset[index]


def test_comparison_tables_count_recall_at_the_configured_thresholds(folder, tmp_path):
    """evaluate.thresholds [0.05, 0.5]: the comparison's recall columns are those two, and its cells read them."""
    from scbloss.comparison import comparison_cells
    from scbloss.experiments import metrics_path, row_run

    config = _config(folder, evaluate={"thresholds": [0.05, 0.5]})
    (spec,) = comparison_specs(config)
    recall_keys = [c["key"] for c in spec["columns"] if "@" in c["key"]]
    assert recall_keys == [f"{b}@{t}" for t in (0.05, 0.5) for b in ("small", "medium", "large")]
    for number, row in enumerate(spec["rows"]):
        path = Path(metrics_path(tmp_path, row_run(spec, row, 0).id, spec["split"]))
        path.parent.mkdir(parents=True)
        recall = [
            {"bucket": b, "threshold": t, "recall": 10 * number + t}
            for t in (0.05, 0.5)
            for b in ("small", "medium", "large")
        ]
        path.write_text(json.dumps({"voc_map": 50.0 + number, "recall": recall}))
    cells = {(c["row"], c["column"]): c for c in comparison_cells(spec, tmp_path, seeds=1)}
    assert cells[("scb", "small@0.5")]["mean"] == 10.5 and cells[("scb", "small@0.5")]["difference"] == 10


def test_a_paper_table_whose_thresholds_are_not_evaluated_fails_the_dry_run():
    from scbloss.experiments import TableSpecError, table_specs

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config.update(tables=["table3"], tables_dir=str(REPO / "paper_tables"), evaluate={"thresholds": [0.05, 0.5]})
    with pytest.raises(TableSpecError, match=r"table3.yaml: its rows count recall at 0.01, 0.1, 0.3, which the config"):
        table_specs(config)


def test_a_generated_toy_dataset_of_yours_its_seeds_and_training_values(tmp_path):
    """The default config's headline: the toy shapes generated as a dataset of yours, 3 seeds beside the paper's
    tables' 1, trained by their own values (``train.<dataset>``)."""
    from scbloss.experiments import check_train_block, runs_for_tables, table_specs, toy_datasets

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(tables=["table1"], tables_dir=str(REPO / "paper_tables"))
    shapes = config["data"]["shapes"]
    assert dataset_entry(config, "shapes", "test") == {
        "kind": "voc_folder",
        "root": f"{shapes['root']}/VOCdevkit/VOC2007",  # where `scbloss data toy` writes the VOC layout
        "split": "test",
    }
    assert toy_datasets(config) == {config["data"]["voc"]["root"]: config["toy"], shapes["root"]: shapes["toy"]}
    runs = runs_for_tables(table_specs(config), config["seeds"])
    assert [r.id for r in runs if r.dataset == "shapes"] == [
        f"shapes-ssd300-{w}-s{seed}" for w in ("none", "scb") for seed in range(3)
    ]
    assert sum(r.dataset == "voc" for r in runs) == 5  # Table 1: one seed each
    headline = train_config(config, Run("shapes", "ssd300", "scb", "", 1))
    assert headline["max_iter"] == config["train"]["shapes"]["max_iter"] != config["train"]["defaults"]["max_iter"]
    assert train_config(config, Run("voc", "ssd300", "scb"))["max_iter"] == config["train"]["defaults"]["max_iter"]
    config["train"]["shapez"] = {"max_iter": 5}
    with pytest.raises(ValueError, match=r"train.shapez: neither a section .* nor a dataset of `data` \(voc, coco, sh"):
        check_train_block(config)
    config["data"]["other"] = {**shapes, "toy": {**shapes["toy"], "seed": 9}}
    with pytest.raises(ValueError, match=r"data.other: root 'results/data/shapes' holds another toy dataset"):
        toy_datasets(config)
