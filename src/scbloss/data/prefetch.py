"""The next batch prepared while this one trains: a background thread runs ``prepare`` one batch ahead.

On CUDA the thread works on a side stream (NVIDIA's DeepLearningExamples SSD prefetches so): decode and
augmentation of batch k+1 overlap step k; the training thread's stream waits for the side stream before using a
batch (``wait_stream``) and the batch's tensors are marked as used there (``record_stream``), so the caching
allocator does not hand their memory back to the side stream early. On a CPU the same class runs with the thread
only, so its order, errors and shutdown are tested there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

import torch

_DONE = object()


class PrefetchError(RuntimeError):
    """``prepare`` failed in the producer thread; the message names the batch."""


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class Prefetcher:
    """Iterate ``prepare(batch)`` for each batch of ``source``, ``depth`` batches ahead, in order.

    An error in the producer is raised in the consuming thread as :class:`PrefetchError` naming the batch (its
    position in ``source``, counted from ``first``); :meth:`close` (also on leaving a ``with`` block, by an error
    or KeyboardInterrupt) stops the producer without waiting for the rest of ``source``.
    """

    def __init__(
        self,
        source: Iterable,
        prepare: Callable,
        device: torch.device,
        depth: int = 1,
        first: int = 0,
    ) -> None:
        self.source, self.prepare, self.device, self.first = source, prepare, torch.device(device), first
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.thread = threading.Thread(target=self._produce, name="batch-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        index = self.first
        try:
            for batch in self.source:
                if self.stop.is_set():
                    return
                try:
                    if self.stream is not None:
                        with torch.cuda.stream(self.stream):
                            prepared = self.prepare(batch)
                    else:
                        prepared = self.prepare(batch)
                except Exception as error:
                    self._put(PrefetchError(f"preparing batch {index}: {error}").with_traceback(error.__traceback__))
                    return
                if not self._put(prepared):
                    return
                index += 1
        except Exception as error:  # the source itself (a loader worker's error)
            self._put(PrefetchError(f"reading batch {index}: {error}").with_traceback(error.__traceback__))
            return
        self._put(_DONE)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self.queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise StopIteration from None
        if item is _DONE:
            self.queue.put(_DONE)  # later calls stop too
            raise StopIteration
        if isinstance(item, PrefetchError):
            raise item
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for tensor in _tensors(item):
                if tensor.device.type == "cuda":
                    tensor.record_stream(current)
        return item

    def close(self, timeout: float = 10.0) -> None:
        """Stop the producer (it finishes the batch it is preparing, then ends), then the source's loader workers."""
        self.stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout)
        shutdown = getattr(self.source, "_shutdown_workers", None)  # a DataLoader iterator's (loader.batches)
        if shutdown is not None:
            shutdown()

    _shutdown_workers = close  # what scbloss.data.loader.batches calls on every way out

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Prefetched:
    """A loader whose batches come through ``prepare`` one step ahead: each ``iter`` starts the loader's workers in
    the calling thread and a :class:`Prefetcher` over them (``first``: the index of the first batch, for errors)."""

    def __init__(self, loader: Iterable, prepare: Callable, device: torch.device, first: int = 0) -> None:
        self.loader, self.prepare, self.device, self.first = loader, prepare, device, first

    def __iter__(self) -> Prefetcher:
        return Prefetcher(iter(self.loader), self.prepare, self.device, first=self.first)


__all__ = ["PrefetchError", "Prefetched", "Prefetcher"]
