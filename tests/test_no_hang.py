"""A failure anywhere ends the process within seconds, with one line naming the cause, whatever the worker count.

DataLoader workers ignore SIGTERM (they leave it to the main process), so workers left running at exit would make
the interpreter wait forever: each case runs under a timeout.
"""

import subprocess
import sys

import pytest
import yaml

from scbloss.data.toy import ToyConfig, generate_toy

pytestmark = pytest.mark.slow  # a Python process with torch per case

TRAIN = """
import sys
from scbloss.detection import criterion
if sys.argv[1] == "main":
    calls = []
    def failing(self, outputs, model, targets):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure in the loss")
        return original(self, outputs, model, targets)
    original, criterion.SingleShotCriterion.__call__ = criterion.SingleShotCriterion.__call__, failing
from scbloss.cli import main
raise SystemExit(main(["train", "--config", sys.argv[2], "--out", sys.argv[3]]))
"""

PREDICT = """
import sys
from scbloss.cli import main
from scbloss.data import load_dataset
from scbloss.data.records import DatasetError
from scbloss.engine.predict import predict
from scbloss.models import build_model
data = load_dataset("toy_voc", sys.argv[1], "test")
try:
    predict(build_model("ssd300", 5, width=0.125), data, batch_size=1, num_workers=int(sys.argv[2]), progress=False)
except DatasetError as error:
    print(f"scbloss: error: {error}", file=sys.stderr)
    raise SystemExit(2)
"""


@pytest.fixture(scope="module")
def broken_toy(tmp_path_factory):
    """A toy dataset whose first training image and first test image are truncated JPEGs."""
    toy = generate_toy(tmp_path_factory.mktemp("toy") / "toy", ToyConfig(train_images=4, test_images=2, seed=2))
    images = toy / "VOCdevkit" / "VOC2007" / "JPEGImages"
    split = toy / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    broken = [images / f"{(split / name).read_text().split()[0]}.jpg" for name in ("trainval.txt", "test.txt")]
    for image in broken:
        image.write_bytes(image.read_bytes()[:100])
    return toy, broken


def _run(code, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("where", ["worker", "main"])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_training_failure_ends_the_process_with_one_line(broken_toy, tmp_path, where, workers):
    toy, (broken_train, _) = broken_toy
    if where == "main":  # a dataset without the broken image: the failure is the injected one
        toy = generate_toy(tmp_path / "toy", ToyConfig(train_images=4, test_images=2, seed=3))
    config = {
        "model": "ssd300",
        "width": 0.125,
        "batch_norm": True,
        "batch_size": 2,
        "max_iter": 4,
        "num_workers": workers,
        "dataset": {"kind": "toy_voc", "root": str(toy)},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = _run(TRAIN, where, tmp_path / "run.yaml", tmp_path / "run")
    errors = [line for line in result.stderr.splitlines() if line.startswith("scbloss: error")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    if where == "worker":
        assert errors[0].startswith(f"scbloss: error: {broken_train}: cannot decode image")
    else:
        assert errors[0] == "scbloss: error: injected failure in the loss"


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_an_evaluation_failure_ends_the_process_with_one_line(broken_toy, workers):
    toy, (_, broken_test) = broken_toy
    result = _run(PREDICT, toy, workers)
    assert result.returncode == 2 and f"{broken_test}: cannot decode image" in result.stderr, result.stderr[-3000:]
