"""The rules' software environments: the conda file and the container pin what the tests ran with, and a rule's
Python imports this checkout's scbloss even where the package is not installed (a conda env of dependencies only)."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from scbloss import pipeline

from conftest import REPO, run_snakemake

ENVS = REPO / "envs"
RULE_COMMAND = "python -m scbloss"  # how every rule runs the CLI (workflow/rules/*.smk)


def _conda_pip_lines() -> list[str]:
    env = yaml.safe_load((ENVS / "scbloss.yaml").read_text())
    return next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        name, version = line.split("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def _requirements_txt() -> list[str]:
    lines = (ENVS / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_conda_env_pins_the_tested_versions():
    env = yaml.safe_load((ENVS / "scbloss.yaml").read_text())
    python = next(dep for dep in env["dependencies"] if isinstance(dep, str) and dep.startswith("python="))
    assert python == f"python={sys.version_info.major}.{sys.version_info.minor}"
    lines = _conda_pip_lines()
    # Snakemake copies the file into .snakemake/conda/ before conda reads it: a local path would resolve there.
    assert not [line for line in lines if not re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+]*", line)]
    assert {name: metadata.version(name) for name in _pins(lines)} == _pins(lines)


def test_workflow_tool_pins_are_the_tested_versions():
    pins = _pins(line for line in (ENVS / "workflow.txt").read_text().splitlines() if line and line[0] != "#")
    assert {name: metadata.version(name) for name in pins} == pins


def test_container_requirements_equal_the_conda_pins():
    assert _pins(_requirements_txt()) == _pins(_conda_pip_lines())


def test_pins_satisfy_the_package_requirements():
    pins = _pins(_requirements_txt())
    for text in metadata.requires("scbloss"):
        requirement = Requirement(text)
        if requirement.marker is not None:  # extras (workflow, test) are not part of the runtime image
            continue
        name = requirement.name.lower()
        assert name in pins, f"{name} is a dependency of scbloss but not pinned in envs/"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], str(requirement.specifier))


def test_dockerfile_copies_files_that_exist_and_installs_from_the_pins():
    text = (ENVS / "Dockerfile").read_text()
    sources = [part for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE) for part in line.split()[:-1]]
    assert sources and all((REPO / source).exists() for source in sources), sources
    assert "pip install -r envs/requirements.txt" in text and "pip install --no-deps ." in text


def _dependencies_only_python(folder: Path) -> Path:
    """A venv that sees this interpreter's site-packages as a plain folder: torch & co. import, while an editable
    install's .pth hook is not processed, like a conda env holding only the pinned dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    purelib = Path(
        subprocess.check_output(
            [str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


def test_rule_python_runs_the_checkouts_package(tmp_path, monkeypatch):
    python = _dependencies_only_python(tmp_path / "env")
    checkout = tmp_path / "checkout" / "src"
    shutil.copytree(REPO / "src" / "scbloss", checkout / "scbloss")
    monkeypatch.setenv("PYTHONPATH", "")
    where = [str(python), "-c", "import scbloss; print(scbloss.__file__)"]
    bare = subprocess.run(where, capture_output=True, text=True)
    editable = metadata.distribution("scbloss").read_text("direct_url.json") or ""
    if '"editable": true' in editable:  # only then is the package invisible without the workflow's PYTHONPATH
        assert bare.returncode != 0 and "No module named 'scbloss'" in bare.stderr

    pipeline.expose_workflow_package(str(checkout))
    env = dict(os.environ)
    assert subprocess.check_output(where, env=env, text=True).strip() == str(checkout / "scbloss" / "__init__.py")
    command = [str(python), "-m", "scbloss", "tables", "--help"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "render" in result.stdout, result.stderr


@pytest.mark.slow
def test_every_rule_command_runs_through_the_environments_python():
    code, output = run_snakemake("-n", "-p", "--forceall", "--configfile", str(REPO / "config" / "paper.yaml"))
    assert code == 0, output[-3000:]
    commands = [
        re.sub(r"^(export )?OMP_NUM_THREADS=\S+(;)? (exec )?", "", line)
        for line in re.findall(r"^Shell command: (.+)$", output, re.MULTILINE)
    ]
    commands = [c for c in commands if c != "None"]  # script: rules (run_config) print no command
    subcommands = {c[len(RULE_COMMAND) :].split()[0] for c in commands}
    assert subcommands == {"data", "train", "evaluate", "match-stats", "show-matching", "curves", "tables"}
    assert [c for c in commands if not c.startswith(RULE_COMMAND + " ")] == []
