"""Records -> tensors: a Dataset whose augmentation is seeded per sample, an iteration-based sampler, a collate."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import pil_to_tensor

from .image_cache import ImageCache
from .records import DatasetError, DetectionSet, size_mismatch, to_mmdet_v1, undecodable
from .transforms import too_small_to_train, train_transform


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def training_transform(augmentation: str, size: int, normalize: tuple) -> Callable:
    """The CPU pipeline of a recipe's augmentation (scbloss.recipes): ``(image, target) -> (image, target)``."""
    if augmentation == "authors":
        from .authors_augment import AuthorsTrainTransform

        return AuthorsTrainTransform(size, *normalize)
    if augmentation == "pytorchssd":
        from .pytorchssd_augment import pytorchssd_transform

        return pytorchssd_transform(size, *normalize)
    return train_transform(size, *normalize)


def parameter_drawer(augmentation: str, size: int) -> Callable:
    """What a loader worker runs when the device augments: the same draws as :func:`training_transform`."""
    if augmentation == "authors":
        from .authors_augment import AuthorsDrawer

        return AuthorsDrawer(size)
    from .device_augment import ParameterDrawer

    return ParameterDrawer(size, augmentation)


def _check_trainable(record) -> None:
    problem = too_small_to_train(record.file, record.width, record.height)
    if problem:
        raise DatasetError(problem)


def read_image(file: Path) -> torch.Tensor:
    """An image file as RGB uint8 [3, H, W]; a file that does not decode is a DatasetError naming it."""
    try:
        with Image.open(file) as handle:
            return pil_to_tensor(handle.convert("RGB"))
    except OSError as error:
        raise DatasetError(undecodable(file, error)) from error


class DetectionDataset(Dataset):
    """Items are ``index`` or ``(index, epoch)``; returns (image [3, S, S] float, target).

    The target holds ``boxes`` (normalized xyxy), ``labels`` (1..C), ``image_id`` and ``orig_size`` (h, w).
    Training (``train=True``) leaves difficult and crowd objects out. The random transform runs under a generator
    seeded from (seed, epoch, index), so a sample is the same whatever the worker count or resume point. With
    ``augmentation="authors"`` the boxes enter the transform, and leave it, in mmdetection v1's convention
    (:func:`~scbloss.data.records.to_mmdet_v1`), as that recipe's loss reads them. With ``cache``
    (:mod:`~scbloss.data.image_cache`) the decoded image comes from it instead of the file.
    """

    def __init__(
        self,
        data: DetectionSet,
        transform: Callable,
        train: bool,
        seed: int = 0,
        augmentation: str = "ssd",
        cache: ImageCache | None = None,
    ) -> None:
        self.data, self.transform, self.train, self.seed = data, transform, train, seed
        self.augmentation, self.cache = augmentation, cache

    def _normalized(self, boxes, scale: torch.Tensor) -> torch.Tensor:
        """Boxes / input size. The authors' loss works in pixels (detection.priors.targets_for_loss): in float64,
        multiplying back gives every float32 pixel coordinate exactly, which float32 does not (an exact tie
        between two anchors would then break the other way)."""
        boxes = boxes.as_subclass(torch.Tensor)
        if self.augmentation == "authors":
            return boxes.double() / scale.double()
        return boxes.float() / scale

    def _objects(self, record, keep: np.ndarray, canvas: tuple[int, int]) -> dict:
        boxes, labels = record.boxes[keep], record.labels[keep]
        if self.augmentation == "authors":
            boxes = to_mmdet_v1(boxes, self.data.kind)
            # mmdetection v1 reads no COCO box under a pixel wide or high (SCB_Loss mmdet/datasets/coco.py L79)
            whole = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
            boxes, labels = boxes[whole], labels[whole]
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(boxes).reshape(-1, 4), format="XYXY", canvas_size=canvas)
        return {"boxes": boxes, "labels": torch.from_numpy(labels)}

    def __len__(self) -> int:
        return len(self.data.records)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        record = self.data.records[index]
        if self.train:
            _check_trainable(record)
        # a copy: a transform writing in place must not change the shared cache
        image = self.cache.image(index).clone() if self.cache is not None else read_image(record.file)
        problem = size_mismatch(record.file, image.shape[2], image.shape[1], record.width, record.height)
        if problem:
            raise DatasetError(problem)
        keep = record.counted() if self.train else np.ones(len(record), dtype=bool)
        target = self._objects(record, keep, image.shape[1:])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            image, target = self.transform(tv_tensors.Image(image), target)
        height, width = image.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return image.as_subclass(torch.Tensor), {
            "boxes": self._normalized(target["boxes"], scale),
            "labels": target["labels"],
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
        }


class EncodedDetectionDataset(DetectionDataset):
    """The training items of :class:`DetectionDataset` for augmentation on the device: (RawSample, target).

    The worker reads the file's bytes and draws the augmentation's parameters (see
    :mod:`~scbloss.data.device_augment`) under the same (seed, epoch, index) generator; the target's boxes are those
    the CPU pipeline would produce. Decoding and pixels happen on the device, in :func:`augment_batch`. ``cached``:
    the training process holds the decoded images (:mod:`~scbloss.data.image_cache`), so no bytes are read here.
    """

    def __init__(
        self, data: DetectionSet, size: int, seed: int = 0, augmentation: str = "ssd", cached: bool = False
    ) -> None:
        super().__init__(data, parameter_drawer(augmentation, size), train=True, seed=seed, augmentation=augmentation)
        self.size, self.cached = size, cached

    def __getitem__(self, key: int | tuple[int, int]):
        from .device_augment import RawSample, read_sample

        index, epoch = key if isinstance(key, tuple) else (key, 0)
        record = self.data.records[index]
        _check_trainable(record)
        target = self._objects(record, record.counted(), (record.height, record.width))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            drawn, target = self.transform(record.height, record.width, target)
        if self.cached:  # the training process takes the pixels from its decoded-image cache, by index
            empty = torch.empty(0, dtype=torch.uint8)
            sample = RawSample(empty, str(record.file), record.height, record.width, drawn, index)
        else:
            sample = read_sample(record, drawn, index)
        return sample, {
            "boxes": self._normalized(target["boxes"], torch.tensor([float(self.size)] * 4)),
            "labels": target["labels"],
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
        }


class IterationBatchSampler(Sampler):
    """Batches of (index, epoch) for iterations ``start``..``stop - 1``; each epoch a fresh seeded permutation.

    Iteration i always yields the same batch for a given seed, so a resumed run continues exactly where it stopped.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, stop: int, start: int = 0) -> None:
        if num_samples < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {num_samples} training images")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop = start, stop
        self.per_epoch = num_samples // batch_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, order = -1, None
        for iteration in range(self.start, self.stop):
            if iteration // self.per_epoch != epoch:
                epoch = iteration // self.per_epoch
                order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
            first = (iteration % self.per_epoch) * self.batch_size
            yield [(int(i), epoch) for i in order[first : first + self.batch_size]]


class RankSlice(Sampler):
    """One process's share of each global batch, so every process sees different images of the same step."""

    def __init__(self, batches: IterationBatchSampler, rank: int, world_size: int) -> None:
        if batches.batch_size % world_size:
            raise ValueError(f"batch_size {batches.batch_size} is not divisible by the {world_size} processes")
        self.batches, self.rank, self.per_rank = batches, rank, batches.batch_size // world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches:
            yield batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave SIGTERM/SIGUSR1 to the main process: SLURM and `timeout` signal the whole process group, and a
    worker killed by it would take the run down before the main process has saved its checkpoint."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def worker_error(error: Exception) -> str:
    """The one-line message of an error raised in a DataLoader worker (the loader re-raises it in the main process
    wrapped in the worker's whole traceback)."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last


def collate(batch):
    """Stack the images (all resized to the model's input); keep targets as a list (object counts differ).
    Encoded samples (augmentation on the device) stay a list too."""
    images, targets = zip(*batch)
    return (torch.stack(images) if isinstance(images[0], torch.Tensor) else list(images)), list(targets)


@contextlib.contextmanager
def batches(loader: DataLoader):
    """Iterate ``loader`` and stop its worker processes on every way out of the block.

    Workers ignore SIGTERM (see ``_ignore_stop_signals``), so workers left to the interpreter's exit make
    multiprocessing wait forever; and dropping the iterator is not enough when an error is being raised, because
    a worker's error keeps the iterator alive in its traceback (a cycle only the garbage collector breaks).
    """
    iterator = iter(loader)
    try:
        yield iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's iterator has no public way to stop them
        if shutdown is not None:
            shutdown()


def make_loader(
    dataset: Dataset, batch_sampler: Sampler | None = None, batch_size: int = 1, num_workers: int = 0
) -> DataLoader:
    """A DataLoader over iteration batches (training) or the dataset in order (evaluation)."""
    options = {"num_workers": num_workers, "collate_fn": collate, "worker_init_fn": _ignore_stop_signals}
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **options)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)


__all__ = [
    "DetectionDataset",
    "EncodedDetectionDataset",
    "IterationBatchSampler",
    "RankSlice",
    "batches",
    "collate",
    "make_loader",
    "parameter_drawer",
    "read_image",
    "sample_seed",
    "training_transform",
    "worker_error",
]
