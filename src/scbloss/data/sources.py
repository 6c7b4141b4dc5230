"""The paper's datasets: where each archive comes from, its official md5, and what it unpacks to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str
    path: str  # below the dataset's base URL


VOC_BASE_URL = "http://host.robots.ox.ac.uk/pascal/VOC"
COCO_BASE_URL = "http://images.cocodataset.org"

DATASETS: dict[str, tuple[str, list[Archive]]] = {
    "voc": (
        VOC_BASE_URL,
        [
            Archive("VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64", "voc2007"),
            Archive("VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f", "voc2007"),
            Archive("VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd", "voc2012"),
        ],
    ),
    "coco": (
        COCO_BASE_URL,
        [
            Archive("train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", "zips"),
            Archive("val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", "zips"),
            Archive("test2017.zip", "77ad2c53ac5d0aea611d422c0938fb35", "zips"),
            Archive("annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c", "annotations"),
            Archive("image_info_test2017.zip", "85da7065e5e600ebfee8af1edb634eb5", "annotations"),
        ],
    ),
}


def archive_url(base_url: str, archive: Archive) -> str:
    return f"{base_url.rstrip('/')}/{archive.path}/{archive.filename}"


__all__ = ["Archive", "DATASETS", "archive_url"]
