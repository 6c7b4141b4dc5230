import json
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from scbloss.cli import main


def test_toy_then_check(tmp_path, capsys):
    assert main(["data", "toy", "--out", str(tmp_path / "toy"), "--images", "12", "--test-images", "4"]) == 0
    assert main(["data", "check", str(tmp_path / "toy")]) == 0
    out = capsys.readouterr().out
    assert "## toy_voc/trainval: 12 images" in out and "## toy_coco/val: 4 images" in out
    assert "small" in out and "PROBLEM" not in out


def test_check_reports_problems_with_the_file(tmp_path, capsys):
    main(["data", "toy", "--out", str(tmp_path / "toy"), "--images", "4", "--test-images", "2"])
    (tmp_path / "toy/VOCdevkit/VOC2007/Annotations/000002.xml").write_text("<annotation>")
    assert main(["data", "check", str(tmp_path / "toy")]) == 1
    assert "000002.xml: malformed XML" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "no toy, VOCdevkit, COCO or VOC-folder layout found" in capsys.readouterr().out


def test_download_error_is_one_clear_line(tmp_path, capsys):
    assert main(["data", "download", "--dataset", "voc", "--root", str(tmp_path), "--existing", str(tmp_path)]) == 2
    assert "not an extracted VOC folder" in capsys.readouterr().err


def _toy(tmp_path, images=6):
    main(["data", "toy", "--out", str(tmp_path / "toy"), "--images", str(images), "--test-images", "2"])
    return tmp_path / "toy"


def test_check_decodes_every_image_and_reports_every_problem(tmp_path, capsys):
    toy = _toy(tmp_path)
    voc = toy / "VOCdevkit" / "VOC2007"
    truncated = voc / "JPEGImages" / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:100])  # the header survives, the pixels do not
    resized = voc / "JPEGImages" / "000003.jpg"
    Image.open(resized).resize((50, 40)).save(resized)
    for name in ("000004.xml", "000005.xml"):
        (voc / "Annotations" / name).write_text("<annotation>")
    coco_json = toy / "coco" / "annotations" / "instances_train2017.json"
    coco = json.loads(coco_json.read_text())
    coco["annotations"][0]["bbox"] = coco["annotations"][0]["bbox"][:3]
    coco_json.write_text(json.dumps(coco))
    capsys.readouterr()
    assert main(["data", "check", str(toy), "--workers", "2"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROBLEM")]
    text = "\n".join(problems)
    assert f"{truncated}: cannot decode image" in text  # and its hard link in coco/train2017 too
    assert f"{toy / 'coco' / 'train2017' / '000002.jpg'}: cannot decode image" in text
    assert f"{resized}: image is 50x40, annotation says" in text
    assert "000004.xml: malformed XML" in text and "000005.xml: malformed XML" in text  # every one, not the first
    annotation_id = coco["annotations"][0]["id"]
    assert (
        f"instances_train2017.json: annotations[0] (id {annotation_id}): bbox must be 4 numbers [x, y, width, "
        "height], got ["
    ) in text


@pytest.mark.slow
def test_a_workers_decode_error_reaches_the_user_as_one_line(tmp_path):
    toy = _toy(tmp_path, images=4)
    broken = toy / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    config = {
        "model": "ssd300",
        "width": 0.125,
        "batch_size": 2,
        "max_iter": 4,
        "num_workers": 1,
        "dataset": {"kind": "toy_voc", "root": str(toy)},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scbloss",
            "train",
            "--config",
            str(tmp_path / "run.yaml"),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("scbloss: error")]
    assert len(error_lines) == 1 and error_lines[0].startswith(f"scbloss: error: {broken}: cannot decode image ("), (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "a-file").write_text("")
    config = {"dataset": {"kind": "toy_voc", "root": str(tmp_path)}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scbloss",
            "train",
            "--config",
            str(tmp_path / "run.yaml"),
            "--out",
            str(tmp_path / "a-file" / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"scbloss: error: {tmp_path / 'a-file' / 'run'}: Not a directory"
