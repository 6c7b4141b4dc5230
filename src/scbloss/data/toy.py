"""A small, learnable, deterministic detection dataset written in both VOC and COCO layouts.

Four classes of textured shapes (a dotted red disc, a striped blue square, a checkered yellow triangle and a green
cross) on a noisy, cluttered background; objects at small (< 32^2 px), medium and large scales; some faded objects
flagged difficult (written as iscrowd in the COCO layout, so both layouts leave the same objects out); a few images
without objects. Each box is the tight box of the pixels the object was drawn on.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TOY_CLASSES = ["disc", "square", "triangle", "cross"]
TOY_CATEGORY_IDS = [1, 3, 5, 7]  # deliberately not contiguous, as COCO's are not
_COLOURS = {"disc": (225, 50, 50), "square": (50, 120, 235), "triangle": (240, 205, 30), "cross": (40, 190, 80)}
_SIZES = {"small": (10, 28), "medium": (36, 90), "large": (100, 200)}  # side in px; 28^2 < 32^2 < 36^2
_SIZE_MIX = (("small", 0.35), ("medium", 0.40), ("large", 0.25))
_TOY_SPLITS = {"trainval": "train2017", "test": "val2017"}  # the VOC layout's split -> the COCO layout's


@dataclass(frozen=True)
class ToyConfig:
    train_images: int = 320
    test_images: int = 120
    seed: int = 0
    min_side: int = 260
    max_side: int = 340
    max_objects: int = 6
    empty_fraction: float = 0.05
    difficult_fraction: float = 0.08


def _mask(shape: str, side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    last = side - 1
    if shape == "disc":
        draw.ellipse([0, 0, last, last], fill=255)
    elif shape == "square":
        draw.rectangle([0, 0, last, last], fill=255)
    elif shape == "triangle":
        draw.polygon([(last / 2, 0), (last, last), (0, last)], fill=255)
    else:
        bar = max(2, side // 3)
        start = (side - bar) // 2
        draw.rectangle([start, 0, start + bar - 1, last], fill=255)
        draw.rectangle([0, start, last, start + bar - 1], fill=255)
    return mask


def _texture(shape: str, side: int) -> np.ndarray:
    colour = np.array(_COLOURS[shape], dtype=np.float32)
    yy, xx = np.mgrid[0:side, 0:side]
    period = max(3, side // 6)
    if shape == "disc":
        pattern = ((xx % period < period / 2) & (yy % period < period / 2)).astype(np.float32)
    elif shape == "square":
        pattern = (yy % period < period / 2).astype(np.float32)
    elif shape == "triangle":
        pattern = (((xx // period) + (yy // period)) % 2).astype(np.float32)
    else:
        pattern = np.zeros((side, side), dtype=np.float32)
    return (colour * (1.0 - 0.45 * pattern[..., None])).clip(0, 255)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = rng.uniform(90, 170, size=3)
    image = np.broadcast_to(base, (height, width, 3)).astype(np.float32).copy()
    canvas = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(8, 16))):  # clutter: greyish lines and outlines, not shaped like the classes
        grey = int(rng.uniform(40, 220))
        tint = tuple(int(np.clip(grey + rng.normal(0, 12), 0, 255)) for _ in range(3))
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=tint, width=int(rng.integers(1, 4)))
        else:
            draw.rectangle([x0, y0, x1, y1], outline=tint, width=int(rng.integers(1, 3)))
    noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 10, size=(height, width, 3))
    return noisy


def _touches(a: list[int], b: list[int], margin: int = 2) -> bool:
    return not (a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1])


def render_image(rng: np.random.Generator, config: ToyConfig) -> tuple[Image.Image, list[dict]]:
    """One image and its objects: class name, tight xyxy box (inclusive 0-based pixels), difficult flag."""
    width, height = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, 2))
    pixels = _background(rng, width, height)
    objects: list[dict] = []
    count = 0 if rng.random() < config.empty_fraction else int(rng.integers(1, config.max_objects + 1))
    plans = []
    for _ in range(count):
        shape = TOY_CLASSES[int(rng.integers(len(TOY_CLASSES)))]
        bucket = rng.choice([b for b, _ in _SIZE_MIX], p=[p for _, p in _SIZE_MIX])
        plans.append((shape, min(int(rng.integers(*_SIZES[bucket])), width - 2, height - 2)))
    for shape, side in sorted(plans, key=lambda plan: -plan[1]):  # large first, so they still find room
        for _ in range(6):  # a few placement tries; an object that never fits is left out
            x0, y0 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            mask = np.asarray(_mask(shape, side), dtype=np.float32) / 255.0
            ys, xs = np.nonzero(mask > 0.5)
            box = [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()), y0 + int(ys.max())]
            if not any(_touches(box, other["box"]) for other in objects):  # no occlusion: every box all visible
                break
        else:
            continue
        difficult = bool(rng.random() < config.difficult_fraction)
        alpha = mask[..., None] * (0.35 if difficult else 1.0)
        region = pixels[y0 : y0 + side, x0 : x0 + side]
        region[:] = region * (1 - alpha) + _texture(shape, side) * alpha
        objects.append({"name": shape, "box": box, "difficult": difficult})
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), objects


def _voc_xml(filename: str, width: int, height: int, objects: list[dict]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "difficult").text = "1" if obj["difficult"] else "0"
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["box"]):
            ET.SubElement(box, tag).text = str(value + 1)  # VOC is 1-based
    ET.indent(root)
    return ET.ElementTree(root)


def _coco_json(entries: list[tuple[int, str, int, int, list[dict]]]) -> dict:
    images, annotations = [], []
    for image_id, filename, width, height, objects in entries:
        images.append({"id": image_id, "file_name": filename, "width": width, "height": height})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": TOY_CATEGORY_IDS[TOY_CLASSES.index(obj["name"])],
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": int(obj["difficult"]),
                }
            )
    categories = [{"id": c, "name": n, "supercategory": "shape"} for c, n in zip(TOY_CATEGORY_IDS, TOY_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def toy_folders(root: str, layout: str) -> dict:
    """Where :func:`generate_toy` writes one layout, as a dataset-of-yours entry names it: ``path`` (VOC) or the
    ``annotations`` and ``images`` of each split (COCO)."""
    if layout == "voc":
        return {"path": f"{root}/VOCdevkit/VOC2007"}
    splits = _TOY_SPLITS.values()
    return {
        "annotations": {split: f"{root}/coco/annotations/instances_{split}.json" for split in splits},
        "images": {split: f"{root}/coco/{split}" for split in splits},
    }


def generate_toy(out: Path, config: ToyConfig = ToyConfig()) -> Path:
    """Write the toy dataset under ``out`` (VOCdevkit/VOC2007 and coco/), atomically: staged, then renamed."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.generating")
    shutil.rmtree(staging, ignore_errors=True)
    voc = staging / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    rng = np.random.default_rng(config.seed)
    splits = {
        voc_split: (coco_split, config.train_images if voc_split == "trainval" else config.test_images)
        for voc_split, coco_split in _TOY_SPLITS.items()
    }
    image_id = 0
    for voc_split, (coco_split, count) in splits.items():
        (staging / "coco" / coco_split).mkdir(parents=True)
        names, entries = [], []
        for _ in range(count):
            image_id += 1
            name = f"{image_id:06d}"
            image, objects = render_image(rng, config)
            jpeg = voc / "JPEGImages" / f"{name}.jpg"
            image.save(jpeg, quality=92)
            os.link(jpeg, staging / "coco" / coco_split / f"{name}.jpg")
            _voc_xml(f"{name}.jpg", image.width, image.height, objects).write(voc / "Annotations" / f"{name}.xml")
            names.append(name)
            entries.append((image_id, f"{name}.jpg", image.width, image.height, objects))
        (voc / "ImageSets" / "Main" / f"{voc_split}.txt").write_text("\n".join(names) + "\n")
        annotations = staging / "coco" / "annotations" / f"instances_{coco_split}.json"
        annotations.parent.mkdir(exist_ok=True)
        annotations.write_text(json.dumps(_coco_json(entries)))
    (staging / "toy.json").write_text(json.dumps({"classes": TOY_CLASSES, **config.__dict__}, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return out


__all__ = ["TOY_CLASSES", "TOY_CATEGORY_IDS", "ToyConfig", "generate_toy", "render_image", "toy_folders"]
