"""The prefetcher on a CPU (thread, no streams): same batches in the same order, producer errors named in the
training thread, no hang when the consumer stops early."""

import threading
import time

import pytest
import torch

from scbloss.data.prefetch import Prefetcher, PrefetchError

CPU = torch.device("cpu")


def _prepare(batch):
    return torch.tensor(batch) * 2, [{"n": torch.tensor(b)} for b in batch]


def test_the_same_batches_in_the_same_order():
    source = [[i, i + 1] for i in range(0, 20, 2)]
    with Prefetcher(source, _prepare, CPU) as prefetched:
        got = list(prefetched)
    expected = [_prepare(batch) for batch in source]
    assert len(got) == 10
    for (images, targets), (want, want_targets) in zip(got, expected):
        assert torch.equal(images, want) and [t["n"] for t in targets] == [t["n"] for t in want_targets]


def test_an_error_in_the_producer_is_raised_in_the_training_thread_naming_the_batch():
    def prepare(batch):
        if batch == 3:
            raise ValueError("photo.jpg: cannot decode image")
        return batch

    with Prefetcher(range(6), prepare, CPU, first=100) as prefetched:
        assert [next(prefetched) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(PrefetchError, match=r"preparing batch 103: photo.jpg: cannot decode image"):
            next(prefetched)


def test_stopping_early_ends_the_producer_without_a_hang():
    """The consumer leaves by KeyboardInterrupt after one batch of an endless source: close returns within 5 s."""

    def endless():
        while True:
            yield 1

    prefetched = Prefetcher(endless(), lambda b: b, CPU, depth=2)
    with pytest.raises(KeyboardInterrupt):
        with prefetched:
            next(prefetched)
            raise KeyboardInterrupt
    start = time.monotonic()
    prefetched.thread.join(5)
    assert not prefetched.thread.is_alive() and time.monotonic() - start < 5
    assert all(t.name != "batch-prefetch" or not t.is_alive() for t in threading.enumerate())
