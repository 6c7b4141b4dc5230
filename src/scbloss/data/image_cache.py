"""The decoded-image cache (train key ``cache``): each training image decoded once, then read from memory.

``memory`` keeps the decoded uint8 images in host memory, ``gpu`` on the training device; the images are decoded
by the very decoder the uncached path uses (PIL for torchvision's v2 pipeline in the workers; torchvision's
``decode_jpeg`` on the training device for the device path, then copied to the host for ``memory``), so every
batch is the one the run would train on without the cache. The decoded size is estimated from the records' image
sizes (3 x height x width bytes each) before anything is decoded, and a cache over its limit is refused
(:func:`cache_limit`).

Workers: the images sit in one packed buffer. On the device path the workers only draw parameters and never touch
it (the training process reads it when it augments). On the v2 path the workers read it: the buffer is then put
in shared memory once, before any worker starts, so every worker maps the same pages whatever the start method
(fork inherits them; spawn and forkserver receive a handle), instead of holding a copy each.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from .records import DatasetError, DetectionSet, size_mismatch

log = logging.getLogger(__name__)

CACHE_MODES = ("none", "memory", "gpu")
HOST_FRACTION = 0.5  # of the host memory available when the run starts, shared by this node's training processes
DEVICE_FRACTION = 0.5  # of the device memory free when the cache is built: the rest is the model's and the batch's
CHUNK = 64  # images decoded per call


def decoded_bytes(data: DetectionSet) -> int:
    """The decoded size of a dataset's images, uint8 RGB, from its records' sizes."""
    return sum(3 * record.height * record.width for record in data.records)


def _host_available() -> int:
    """MemAvailable (free memory plus what the kernel can reclaim); free pages where /proc/meminfo is absent."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _shm_free() -> int | None:
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def cache_limit(mode: str, device: torch.device, processes: int = 1, shared: bool = False) -> tuple[int, str]:
    """(bytes, how they were reckoned): ``memory``: HOST_FRACTION of the available host memory over the node's
    ``processes`` (and, ``shared`` with workers, no more than /dev/shm's free space); ``gpu``: DEVICE_FRACTION of
    the training device's free memory."""
    if mode == "gpu":
        if device.type != "cuda":
            raise ValueError(f"cache: gpu keeps the images on a CUDA training device; this run trains on {device}")
        free, _ = torch.cuda.mem_get_info(device)
        return int(DEVICE_FRACTION * free), f"{DEVICE_FRACTION:g} of {device}'s free memory, {_gb(free)}"
    available = _host_available()
    limit = int(HOST_FRACTION * available / processes)
    how = f"{HOST_FRACTION:g} of the host's available memory, {_gb(available)}"
    if processes > 1:
        how += f", over {processes} training processes on this node"
    shm = _shm_free() if shared else None
    if shm is not None and shm < limit:
        limit, how = shm, f"the free space of /dev/shm, where the loader's workers share it: {_gb(shm)}"
    return limit, how


def _gb(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


class ImageCache:
    """A dataset's decoded uint8 images [3, H, W], packed in one buffer, by record index."""

    def __init__(self, buffer: torch.Tensor, offsets: list[int], shapes: list[tuple[int, int]]) -> None:
        self.buffer, self.offsets, self.shapes = buffer, offsets, shapes

    @classmethod
    def build(
        cls,
        data: DetectionSet,
        name: str,
        decode: Callable[[Sequence[int]], list[torch.Tensor]],
        store: torch.device,
        limit: tuple[int, str],
        shared: bool = False,
    ) -> ImageCache:
        """Decode every record's image by ``decode(indices)`` into a buffer on ``store`` (``shared``: in shared
        memory); refused, naming ``name``, before decoding anything when the estimate exceeds ``limit``."""
        need = decoded_bytes(data)
        if need > limit[0]:
            raise DatasetError(
                f"cache: the {len(data.records)} training images of {name} decode to about {_gb(need)} of uint8, "
                f"over the cache's limit of {_gb(limit[0])} ({limit[1]}); train with cache: none"
            )
        shapes = [(record.height, record.width) for record in data.records]
        offsets = [0]
        for height, width in shapes:
            offsets.append(offsets[-1] + 3 * height * width)
        buffer = torch.empty(offsets[-1], dtype=torch.uint8, device=store)
        if shared:
            buffer.share_memory_()
        for first in range(0, len(shapes), CHUNK):
            indices = range(first, min(first + CHUNK, len(shapes)))
            for index, image in zip(indices, decode(indices)):
                record = data.records[index]
                problem = size_mismatch(record.file, image.shape[2], image.shape[1], record.width, record.height)
                if problem:
                    raise DatasetError(problem)
                buffer[offsets[index] : offsets[index + 1]] = image.reshape(-1)
        log.info("cache: %d decoded images of %s, %s on %s", len(shapes), name, _gb(need), store)
        return cls(buffer, offsets[:-1], shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as a view into the cache: callers must not write to it."""
        height, width = self.shapes[index]
        start = self.offsets[index]
        return self.buffer[start : start + 3 * height * width].view(3, height, width)

    def images(self, indices: Sequence[int], device: torch.device) -> list[torch.Tensor]:
        """Images on ``device``: views where the cache is there, else one copy of the batch's bytes."""
        views = [self.image(i) for i in indices]
        if self.buffer.device == device:
            return views
        packed = torch.cat([v.reshape(-1) for v in views]).to(device, non_blocking=True)
        return [chunk.view(v.shape) for chunk, v in zip(packed.split([v.numel() for v in views]), views)]


def pil_decoder(data: DetectionSet, threads: int | None = None) -> Callable[[Sequence[int]], list[torch.Tensor]]:
    """The v2 path's decoder (PIL, as :func:`~scbloss.data.loader.read_image`), in threads: PIL decodes without
    the GIL."""
    from .loader import read_image

    threads = threads or min(8, os.cpu_count() or 1)

    def decode(indices):
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda i: read_image(data.records[i].file), indices))

    return decode


def device_decoder(data: DetectionSet, device: torch.device) -> Callable[[Sequence[int]], list[torch.Tensor]]:
    """The device path's decoder (:func:`~scbloss.data.device_augment.decode_batch` on ``device``)."""
    from .device_augment import decode_batch, read_sample

    def decode(indices):
        return decode_batch([read_sample(data.records[i], None) for i in indices], device)

    return decode


def build_cache(
    mode: str, data: DetectionSet, name: str, device: torch.device, on_device: bool, workers: int, processes: int = 1
) -> ImageCache | None:
    """The cache a run's ``cache`` key asks for (None for ``none``), decoded as its augmentation path decodes.

    ``on_device``: the training device augments (decodes there); otherwise the loader's ``workers`` run v2 and read
    the cache, which they can only do from host memory."""
    if mode == "none":
        return None
    if mode == "gpu" and not on_device:
        raise ValueError("cache: gpu keeps the images where the device augments them; this run augments on the CPU")
    shared = not on_device and workers > 0
    limit = cache_limit(mode, device, processes, shared)
    decode = device_decoder(data, device) if on_device else pil_decoder(data)
    store = device if mode == "gpu" else torch.device("cpu")
    return ImageCache.build(data, name, decode, store, limit, shared)


__all__ = ["CACHE_MODES", "ImageCache", "build_cache", "cache_limit", "decoded_bytes"]
