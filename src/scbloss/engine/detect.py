"""`scbloss detect`: a trained detector on image files -> each image with its detections drawn, and COCO results.

Each readable image is written as ``<out>/<its stem>.png`` with its boxes and "class score" labels drawn. All the
detections go to ``<out>/detections.json``, one object holding COCO's lists:

- ``images``: ``{"id", "file_name", "width", "height"}`` of each image read; ``file_name`` is its path as found,
  ``id`` its position (from 1) among the images found, so an image keeps its id whether or not another is readable;
- ``categories``: ``{"id", "name"}`` of each class the model has;
- ``detections``: a COCO result list, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, boxes in the
  original image's pixels: the entries ``scbloss evaluate`` reports for the image (the same preprocessing,
  candidates and NMS), those scoring at least the threshold, at most the best ``top_k`` of each image.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes
from tqdm import tqdm

from .. import detectors
from ..atomic import atomic_path
from ..data.loader import read_image
from ..data.records import DatasetError
from ..data.transforms import normalization
from ..paths import DETECTIONS
from ..recipes import recipe
from .checkpoint import load_trained
from .predict import coco_results, detect_batch, input_transform, trained_memory_format, write_json

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# One colour per class (label l takes BOX_COLOURS[(l - 1) % 10]), light enough for the black label text on it
BOX_COLOURS = [
    (255, 99, 71),
    (50, 205, 50),
    (30, 144, 255),
    (255, 215, 0),
    (255, 105, 180),
    (0, 206, 209),
    (255, 165, 0),
    (186, 85, 211),
    (173, 255, 47),
    (135, 206, 250),
]
LINE_WIDTH = 2


@dataclass
class DetectReport:
    """What a detect run wrote: the JSON, how many images and detections, and one line per unreadable image."""

    json: Path
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)


def collect_images(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The image files named or inside the folders named (not their subfolders), folders' files sorted by name,
    each once; and one problem line per path that does not exist. No image at all is an error naming the paths."""
    found: dict[Path, Path] = {}
    missing = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                log.warning("%s: no image files in this folder", path)
        elif path.exists():
            inside = [path]  # named explicitly: read whatever its suffix
        else:
            missing.append(f"{path}: no such file or folder")
            continue
        for file in inside:
            found.setdefault(file.resolve(), file)
    if not found:
        named = ", ".join(str(p) for p in paths)
        raise ValueError(f"{named}: no image files found ({', '.join(IMAGE_SUFFIXES)})")
    return list(found.values()), missing


def drawing_paths(files: list[Path], out: Path) -> list[Path]:
    """``out/<stem>.png`` of each file; two files of one stem, or a drawing that would overwrite an input, are
    errors before anything runs."""
    targets = [Path(out) / f"{file.stem}.png" for file in files]
    sources = defaultdict(list)
    for file, target in zip(files, targets):
        sources[target].append(file)
    inputs = {file.resolve() for file in files}
    for target, named in sources.items():
        if len(named) > 1:
            listing = ", ".join(str(f) for f in named)
            raise ValueError(f"{target}: would hold the drawing of each of {listing}; detect them into separate --out")
        if target.resolve() in inputs:
            raise ValueError(f"{target}: is an input image, which its drawing would overwrite; choose another --out")
    return targets


def confident(detections: dict[str, torch.Tensor], score: float, top_k: int) -> dict[str, torch.Tensor]:
    """The detections scoring at least ``score``, at most the ``top_k`` best (they come best first)."""
    keep = detections["scores"] >= score
    return {key: values[keep][:top_k] for key, values in detections.items()}


def draw(image: torch.Tensor, detections: dict[str, torch.Tensor], class_names: list[str]) -> torch.Tensor:
    """``image`` (uint8 [3, H, W]) with each box outlined in its class's colour and labelled "class score"."""
    if len(detections["boxes"]) == 0:
        return image
    boxes = detections["boxes"]
    # a box clipped to a sliver can end a pixel before it starts in an inclusive convention; drawing needs x2 >= x1
    boxes = torch.cat([boxes[:, :2], boxes[:, 2:].maximum(boxes[:, :2])], dim=1)
    labels = detections["labels"].tolist()
    names = [class_names[label - 1] if label <= len(class_names) else f"class {label}" for label in labels]
    texts = [f"{name} {score:.2f}" for name, score in zip(names, detections["scores"].tolist())]
    colours = [BOX_COLOURS[(label - 1) % len(BOX_COLOURS)] for label in labels]
    return draw_bounding_boxes(image, boxes, texts, colors=colours, width=LINE_WIDTH, fill_labels=True)


def detect(
    checkpoint: Path,
    paths: list[Path],
    out: Path,
    score: float = 0.3,
    top_k: int = 100,
    device: str | None = None,
    batch_size: int = 8,
) -> DetectReport:
    """Detect objects in the images of ``paths`` (files or folders) with a model file (or ``torchvision_coco``),
    preprocessed and post-processed as ``scbloss evaluate`` does; write the drawings and ``out/detections.json``.

    An image that cannot be read is logged, named in the report's ``failed`` and skipped.
    """
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score threshold {score}: must be between 0 and 1")
    for name, value in (("top-k", top_k), ("batch size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} {value}: must be at least 1")
    files, missing = collect_images(paths)
    out = Path(out)
    drawings = drawing_paths(files, out)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_trained(checkpoint, device)
    memory_format = trained_memory_format(meta.channels_last, device)
    model.to(memory_format=memory_format)
    transform = input_transform(model, normalization(meta.normalization))
    settings = recipe(meta.recipe).test_settings(detectors.get(meta.model).test)
    category_of = meta.category_ids or list(range(1, meta.num_classes))
    out.mkdir(parents=True, exist_ok=True)
    report = DetectReport(out / DETECTIONS, failed=list(missing))
    for problem in missing:
        log.error("%s", problem)
    images, results = [], []
    starts = range(0, len(files), batch_size)
    for start in tqdm(starts, desc="detect", disable=len(starts) < 2, mininterval=10):
        batch = []
        for image_id, file in enumerate(files[start : start + batch_size], start + 1):
            try:
                batch.append((image_id, file, read_image(file)))
            except DatasetError as error:
                log.error("%s", error)
                report.failed.append(str(error))
        if not batch:
            continue
        found = detect_batch(
            model,
            torch.stack([transform(tv_tensors.Image(image)).as_subclass(torch.Tensor) for _, _, image in batch]),
            [tuple(image.shape[1:]) for _, _, image in batch],
            meta.dataset_kind,
            # post-processed as evaluation does (down to a lower threshold if asked): NMS never lets a lower score
            # suppress a higher one, so cutting at the threshold and top-k leaves evaluation's best detections
            score_threshold=min(score, settings.score_threshold),
            pre_nms_top_k=settings.pre_nms_top_k,
            per_image=top_k,
            device=device,
            memory_format=memory_format,
        )
        for (image_id, file, image), detections in zip(batch, found):
            kept = confident(detections, score, top_k)
            with atomic_path(drawings[image_id - 1]) as temporary:
                to_pil_image(draw(image, kept, meta.class_names)).save(temporary)
            height, width = image.shape[1:]
            images.append({"id": image_id, "file_name": str(file), "width": width, "height": height})
            results.extend(coco_results(image_id, kept, category_of))
            log.debug("%s: %d detections", file, len(kept["scores"]))
    categories = [{"id": category, "name": name} for category, name in zip(category_of, meta.class_names)]
    write_json({"images": images, "categories": categories, "detections": results}, report.json)
    report.images, report.detections = len(images), len(results)
    return report


__all__ = ["BOX_COLOURS", "DetectReport", "collect_images", "confident", "detect", "draw", "drawing_paths"]
