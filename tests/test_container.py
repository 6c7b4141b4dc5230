"""The container image for real: envs/Dockerfile built with podman (tests/container/build.sh), the CLI and its
pins checked inside, the reduced pipeline run inside with `snakemake --cores 2` and compared with the same run
outside, and `snakemake --sdm apptainer` running a job in the image (through tests/container/apptainer, a stand-in
for apptainer, which Debian 12 lacks).

Needs root and podman (the README's test command installs it with tests/container/build.sh install); elsewhere the
tests that need the image are skipped.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, reduced_config, reduced_outputs, run_snakemake

BUILD = REPO / "tests" / "container" / "build.sh"
STANDIN = REPO / "tests" / "container"
TAG = "localhost/scbloss:ci"

pytestmark = pytest.mark.slow  # builds an image and runs pipelines in it

needs_podman = pytest.mark.skipif(
    shutil.which("podman") is None or os.geteuid() != 0,
    reason="needs root and podman: bash tests/container/build.sh install",
)


def _in_image(*command: str, mounts: str = "", timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCBLOSS_CONTAINER_MOUNTS": mounts}
    return subprocess.run(
        ["bash", str(BUILD), "run", TAG, "--", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def image():
    """The image, built once for this module, removed afterwards. build.sh keeps the base and the Dockerfile's
    dependencies stage (the pinned packages) between builds on this machine, up to a week: podman reuses them only
    for the same steps and pin files, as a build from scratch would install them; the project's layers are built
    here each time (the package installed, `pip check` and `scbloss --help` run in the build)."""
    subprocess.run(["bash", str(BUILD), "clean", TAG], timeout=600)  # a run stopped before its teardown left TAG
    build = subprocess.run(["bash", str(BUILD), "build", TAG], capture_output=True, text=True, timeout=2400)
    assert build.returncode == 0, (build.stdout + build.stderr)[-5000:]
    assert "Successfully installed scbloss-" in build.stdout, build.stdout[-3000:]  # built now, not from the cache
    yield TAG
    subprocess.run(["bash", str(BUILD), "clean", TAG], timeout=600)


@needs_podman
def test_the_image_runs_the_cli_and_holds_the_pinned_dependencies(image):
    result = _in_image("bash", "-c", "python -m scbloss --help && python -m pip check && python -m pip freeze")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage: scbloss" in result.stdout and "No broken requirements found." in result.stdout
    installed = dict(line.lower().split("==", 1) for line in result.stdout.splitlines() if "==" in line)
    for line in (REPO / "envs" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.lower().split("==")
            assert installed.get(name) == version, f"{name}: image has {installed.get(name)}, pinned {version}"
    # the CUDA build whose runtime libraries the image carries (docs/containers.md: the driver a GPU node needs)
    torch = _in_image("python", "-c", "import torch; print(torch.__version__, torch.version.cuda)")
    assert torch.stdout.split() == ["2.14.1+cu130", "13.0"], torch.stdout + torch.stderr


@needs_podman
def test_the_reduced_pipeline_in_the_image_writes_what_it_writes_outside(image, reduced_pipeline, tmp_path):
    config = reduced_config(tmp_path)
    result = _in_image("snakemake", "--cores", "2", "--configfile", str(config), mounts=f"-v {tmp_path}:{tmp_path}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    inside, outside = reduced_outputs(tmp_path / "results"), reduced_outputs(reduced_pipeline)
    assert inside.keys() == outside.keys()
    for name in outside:
        assert inside[name] == outside[name], name


@needs_podman
def test_snakemake_with_apptainer_runs_a_job_in_the_image(image, tmp_path):
    config = reduced_config(tmp_path)
    calls = tmp_path / "apptainer.log"
    env = {**os.environ, "PATH": f"{STANDIN}{os.pathsep}{os.environ['PATH']}", "APPTAINER_STANDIN_LOG": str(calls)}
    toy = tmp_path / "results" / "data" / "toy" / "toy.json"
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--sdm", "apptainer", "--configfile", str(config)]
    command += ["--config", f"container=docker://{TAG}", "--", str(toy)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    log = calls.read_text()
    job = next(line for line in log.splitlines() if " exec " in line)
    assert "python -m scbloss data toy" in job, log
    # Snakemake pulls an image once into .snakemake/singularity/ (the stand-in's pull writes the name there)
    pulled = next(word for word in job.split() if word.endswith(".simg"))
    assert Path(pulled).read_text().strip() == f"docker://{TAG}", log
    assert toy.is_file()


def test_a_dry_run_with_apptainer_names_the_image(tmp_path):
    """The dry-run Snakemake prints for `--sdm apptainer` (it looks for an apptainer binary even then)."""
    config = reduced_config(tmp_path)
    env_path = f"{STANDIN}{os.pathsep}{os.environ['PATH']}"
    code, output = run_snakemake(
        "-n",
        "--sdm",
        "apptainer",
        "--configfile",
        str(config),
        "--config",
        "container=docker://registry.example.org/you/scbloss:0.1.0",
        env={"PATH": env_path},
    )
    assert code == 0, output[-3000:]
    assert "Singularity image docker://registry.example.org/you/scbloss:0.1.0 will be pulled." in output


def test_apptainer_without_an_image_is_refused_naming_the_key(tmp_path):
    env = {"PATH": f"{STANDIN}{os.pathsep}{os.environ['PATH']}"}
    code, output = run_snakemake("-n", "--sdm", "apptainer", "--configfile", str(reduced_config(tmp_path)), env=env)
    assert code != 0 and "--sdm apptainer needs an image: set `container:`" in output, output[-3000:]
