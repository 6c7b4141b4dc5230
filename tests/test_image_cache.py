"""The decoded-image cache (train key ``cache``): the same batches as decoding each time, a cache that would not fit
refused before anything is decoded."""

from pathlib import Path

import numpy as np
import pytest
import torch

from scbloss.data import image_cache, load_dataset
from scbloss.data.device_augment import augment_batch
from scbloss.data.image_cache import ImageCache, build_cache, decoded_bytes
from scbloss.data.loader import (
    DetectionDataset,
    EncodedDetectionDataset,
    IterationBatchSampler,
    batches,
    make_loader,
    training_transform,
)
from scbloss.data.records import DatasetError, DetectionSet, ImageRecord
from scbloss.data.toy import ToyConfig, generate_toy
from scbloss.data.transforms import normalization

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=6, test_images=2, seed=2))


@pytest.fixture(scope="module")
def toy(toy_root):
    return load_dataset("toy_voc", toy_root, "trainval")


def _cache(data, on_device: bool, workers: int = 0) -> ImageCache:
    return build_cache("memory", data, "toy", CPU, on_device, workers)


def _loader_batches(dataset, workers: int) -> list:
    loader = make_loader(dataset, IterationBatchSampler(len(dataset), 2, seed=1, stop=4), num_workers=workers)
    with batches(loader) as iterator:
        return list(iterator)


SLOW = ("pytorchssd", "authors")  # each over 5 s on the CI machine
KEYS = [(index, epoch) for index in (0, 3, 5) for epoch in (0, 1)]


@pytest.mark.parametrize("augmentation", ["ssd", *(pytest.param(a, marks=pytest.mark.slow) for a in SLOW)])
def test_the_v2_path_gives_the_same_samples_from_the_cache(toy, augmentation):
    """Each recipe's CPU pipeline, three images in two epochs: image and boxes equal to the bit; the cache unchanged."""
    normalize = normalization("mmdet_caffe" if augmentation == "authors" else "imagenet")
    transform = training_transform(augmentation, 300, normalize)
    plain = DetectionDataset(toy, transform, train=True, seed=4, augmentation=augmentation)
    cache = _cache(toy, on_device=False)
    cached = DetectionDataset(toy, transform, train=True, seed=4, augmentation=augmentation, cache=cache)
    before = cache.buffer.clone()
    for key in KEYS:
        (image, target), (again, cached_target) = plain[key], cached[key]
        assert torch.equal(image, again) and torch.equal(target["boxes"], cached_target["boxes"]), key
    assert torch.equal(cache.buffer, before)  # nothing wrote into it


def test_loader_workers_read_one_shared_cache(toy):
    """With workers the cache is in shared memory (not a copy per worker); a worker's batches equal the ones a
    worker decoding the files makes (both in workers: a worker's single thread rounds some float ops otherwise)."""
    transform = training_transform("ssd", 300, normalization("imagenet"))
    cache = _cache(toy, on_device=False, workers=1)
    assert cache.buffer.is_shared()
    plain = DetectionDataset(toy, transform, train=True, seed=4)
    cached = DetectionDataset(toy, transform, train=True, seed=4, cache=cache)
    for (images, targets), (again, cached_targets) in zip(_loader_batches(plain, 1), _loader_batches(cached, 1)):
        assert torch.equal(images, again)
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets, cached_targets))


@pytest.mark.parametrize("augmentation", ["ssd", *(pytest.param(a, marks=pytest.mark.slow) for a in SLOW)])
def test_the_device_path_gives_the_same_batches_from_the_cache(toy, augmentation):
    """The workers hand over no bytes, only the index; the device's pixels equal the decoding path's to the bit."""
    normalize = normalization("mmdet_caffe" if augmentation == "authors" else "imagenet")
    plain = EncodedDetectionDataset(toy, 300, seed=4, augmentation=augmentation)
    cached = EncodedDetectionDataset(toy, 300, seed=4, augmentation=augmentation, cached=True)
    cache = _cache(toy, on_device=True)
    assert not cache.buffer.is_shared()  # only the training process reads it
    for (samples, targets), (indices, cached_targets) in zip(_loader_batches(plain, 0), _loader_batches(cached, 0)):
        assert all(s.data.numel() == 0 for s in indices)
        expected = augment_batch(samples, 300, CPU, normalize=normalize)
        assert torch.equal(augment_batch(indices, 300, CPU, normalize=normalize, cache=cache), expected)
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets, cached_targets))


def _records(count: int, width: int, height: int) -> DetectionSet:
    boxes, labels, flags = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    records = [ImageRecord(0, Path("/nowhere/0.jpg"), width, height, boxes, labels, flags, flags)] * count
    return DetectionSet(records, ["a"], "coco")


def test_a_cache_that_does_not_fit_is_refused_before_decoding(monkeypatch):
    """COCO train2017's size (118,287 images, here all 640x480): 118287 x 3 x 640 x 480 bytes = 109.0 GB, over half
    of 16 GB available; the message names the dataset, the estimate and the limit. No file is opened."""
    monkeypatch.setattr(image_cache, "_host_available", lambda: 16_000_000_000)
    data = _records(118_287, 640, 480)
    assert decoded_bytes(data) == 109_013_299_200
    with pytest.raises(DatasetError) as error:
        build_cache("memory", data, "coco_json data/coco/train2017 (train2017)", CPU, on_device=True, workers=8)
    assert str(error.value) == (
        "cache: the 118287 training images of coco_json data/coco/train2017 (train2017) decode to about 109.0 GB of "
        "uint8, over the cache's limit of 8.0 GB (0.5 of the host's available memory, 16.0 GB); train with cache: none"
    )


def test_the_limit_is_shared_by_the_nodes_processes_and_bounded_by_shared_memory(monkeypatch):
    monkeypatch.setattr(image_cache, "_host_available", lambda: 16_000_000_000)
    monkeypatch.setattr(image_cache, "_shm_free", lambda: 3_000_000_000)
    assert image_cache.cache_limit("memory", CPU, processes=4) == (
        2_000_000_000,
        "0.5 of the host's available memory, 16.0 GB, over 4 training processes on this node",
    )
    assert image_cache.cache_limit("memory", CPU, shared=True) == (
        3_000_000_000,
        "the free space of /dev/shm, where the loader's workers share it: 3.0 GB",
    )


def test_a_device_cache_needs_the_device_to_augment_on_cuda():
    data = _records(2, 8, 8)
    with pytest.raises(ValueError, match="cache: gpu keeps the images where the device augments them"):
        build_cache("gpu", data, "toy", CPU, on_device=False, workers=0)
    with pytest.raises(
        ValueError, match="cache: gpu keeps the images on a CUDA training device; this run trains on cpu"
    ):
        build_cache("gpu", data, "toy", CPU, on_device=True, workers=0)
    assert build_cache("none", data, "toy", CPU, on_device=True, workers=0) is None


@pytest.mark.slow
@pytest.mark.parametrize("augment_on", ["cpu", "gpu"])
def test_scbloss_train_with_the_cache_ends_with_the_weights_of_one_without(toy_root, tmp_path, augment_on):
    """`cache: memory` through `scbloss train` (the device path here on CPU tensors): the same final weights."""
    from scbloss.engine.config import config_from_dict
    from scbloss.engine.train import train

    finals = {}
    for cache in ("none", "memory"):
        values = {
            "model": "ssd300",
            "width": 0.125,
            "batch_norm": True,
            "dataset": {"kind": "toy_voc", "root": str(toy_root), "split": "trainval"},
            "batch_size": 2,
            "max_iter": 2,
            "lr_steps": [],
            "num_workers": 0,
            "augment_on": augment_on,
            "cache": cache,
        }
        finals[cache] = torch.load(train(config_from_dict(values), tmp_path / cache), weights_only=True)["model"]
    assert all(torch.equal(finals["none"][k], finals["memory"][k]) for k in finals["none"])
