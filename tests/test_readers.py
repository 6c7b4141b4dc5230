import json

import numpy as np
import pytest
from PIL import Image

from scbloss.data.coco import read_coco
from scbloss.data.records import DatasetError
from scbloss.data.voc import VOC_CLASSES, read_voc

XML = """<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = (
    "<object><name>{cls}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
    "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
)


def _voc_image(devkit, year, name, objects, size=(60, 40), split="trainval"):
    base = devkit / f"VOC{year}"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(base / "JPEGImages" / f"{name}.jpg")
    body = "".join(OBJ.format(cls=c, d=d, x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for c, d, b in objects)
    (base / "Annotations" / f"{name}.xml").write_text(XML.format(name=name, w=size[0], h=size[1], objects=body))
    with open(base / "ImageSets" / "Main" / f"{split}.txt", "a") as handle:
        handle.write(name + "\n")


def test_voc_union_with_difficult_and_box_policy(tmp_path):
    _voc_image(tmp_path, "2007", "000001", [("dog", 0, (11, 6, 30, 20)), ("person", 1, (1, 1, 60, 40))])
    _voc_image(tmp_path, "2012", "2012_000002", [("cat", 0, (50, 5, 70, 30)), ("car", 0, (20, 10, 20, 30))])
    data = read_voc(tmp_path, [("2007", "trainval"), ("2012", "trainval")])
    first, second = data.records
    assert first.name == "000001" and second.name == "2012_000002"
    assert [r.image_id for r in data.records] == [0, 1]
    np.testing.assert_array_equal(first.boxes, [[10, 5, 29, 19], [0, 0, 59, 39]])  # 1-based -> 0-based
    assert first.labels.tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1] == [12, 15]
    assert first.difficult.tolist() == [False, True]
    # the cat runs past the right edge (clipped to x = 59); the car has zero width (dropped)
    np.testing.assert_array_equal(second.boxes, [[49, 4, 59, 29]])
    assert second.labels.tolist() == [8] and data.dropped == 1


@pytest.mark.parametrize(
    "breakage,message",
    [
        ("xml", "000001.xml: malformed XML"),
        ("image", "000001.xml: image .*000001.jpg does not exist"),
        ("class", "000001.xml: unknown class 'unicorn'"),
    ],
)
def test_voc_bad_input_names_the_file(tmp_path, breakage, message):
    _voc_image(tmp_path, "2007", "000001", [("unicorn" if breakage == "class" else "dog", 0, (1, 1, 5, 5))])
    if breakage == "xml":
        (tmp_path / "VOC2007/Annotations/000001.xml").write_text("<annotation><filename>")
    if breakage == "image":
        (tmp_path / "VOC2007/JPEGImages/000001.jpg").unlink()
    with pytest.raises(DatasetError, match=message):
        read_voc(tmp_path, [("2007", "trainval")])


def _coco(tmp_path, **overrides):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 80)).save(tmp_path / "images" / name)
    dataset = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 3, "file_name": "b.jpg", "width": 100, "height": 80},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [10, 20, 30, 40], "iscrowd": 0, "area": 1200},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 50, 50], "iscrowd": 1, "area": 2500},
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [90, 70, 20, 20], "iscrowd": 0, "area": 400},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 5, "name": "airplane"}],
    }
    dataset.update(overrides)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dataset))
    return path


def test_coco_mapping_crowd_and_images_without_objects(tmp_path):
    data = read_coco(_coco(tmp_path), tmp_path / "images")
    assert data.class_names == ["airplane", "toothbrush"] and data.category_ids == [5, 90]
    empty, full = data.records  # sorted by image id: 3 then 7
    assert empty.image_id == 3 and len(empty) == 0
    np.testing.assert_array_equal(full.boxes, [[10, 20, 40, 60], [0, 0, 50, 50], [90, 70, 100, 80]])
    assert full.labels.tolist() == [2, 1, 1]
    assert full.crowd.tolist() == [False, True, False]
    assert full.counted().tolist() == [True, False, True]


def test_coco_missing_keys_are_named(tmp_path):
    path = _coco(tmp_path, categories=[{"id": 90}])
    with pytest.raises(DatasetError, match=r"instances.json: categories\[0\] lacks name"):
        read_coco(path, tmp_path / "images")
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="instances.json: missing top-level key 'categories'"):
        read_coco(path, tmp_path / "images")


def test_coco_missing_image_is_named(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "images" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"b.jpg \(id 3\) does not exist"):
        read_coco(path, tmp_path / "images")


def test_coco_duplicate_ids_are_named_and_nothing_is_merged(tmp_path):
    """pycocotools keeps one entry per id: a duplicated image id would put one image's boxes on the other, a
    duplicated annotation id would lose one box and count another twice. Each is named with both entries."""
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 7, "file_name": "b.jpg", "width": 100, "height": 80},
    ]
    with pytest.raises(DatasetError, match=r"images\[0\] and images\[1\] share the id 7 \(file_name 'a.jpg' and "):
        read_coco(_coco(tmp_path, images=images), tmp_path / "images")
    base = json.loads(_coco(tmp_path).read_text())
    twice = [*base["annotations"], {**base["annotations"][0], "bbox": [1, 2, 3, 4]}]
    with pytest.raises(
        DatasetError, match=r"annotations\[0\] and annotations\[3\] share the id 1 .*bbox \[1, 2, 3, 4\]"
    ):
        read_coco(_coco(tmp_path, annotations=twice), tmp_path / "images")
    problems = []
    orphaned = [{**a, "image_id": 3} for a in base["annotations"]]  # every box on the duplicated id
    with pytest.raises(DatasetError, match="and 1 more"):
        read_coco(
            _coco(tmp_path, images=images + [base["images"][1]], annotations=orphaned + twice[3:]),
            tmp_path / "images",
            problems=problems,
        )
    assert len(problems) == 2 and "images[0] and images[1] share the id 7" in problems[0]
