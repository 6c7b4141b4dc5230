"""Helpers the Snakemake workflow calls when it loads."""

from __future__ import annotations

import os
import sys


def expose_interpreter_scripts() -> None:
    """Put the folder of the running Python (a venv's bin/) first on PATH, so a rule's `python` is the one running
    Snakemake when no software deployment is asked for. `--sdm conda` activates its environment in front of it."""
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def expose_workflow_package(src_dir: str) -> None:
    """Put the checkout's `src/` first on PYTHONPATH, so every rule imports the scbloss of this workflow: the
    driver's venv, a conda environment that holds only the pinned dependencies, and the container alike."""
    paths = [os.path.abspath(src_dir)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def expose_detector_modules(modules: list[str]) -> None:
    """Name the config's extra detector modules in the environment every job inherits (see scbloss.detectors), as
    absolute paths where they are files, so a job started in another folder finds them too."""
    from .detectors import MODULES_ENV

    resolved = [os.path.abspath(m) if m.endswith(".py") else m for m in modules]
    if resolved:
        os.environ[MODULES_ENV] = os.pathsep.join(resolved)
    else:
        os.environ.pop(MODULES_ENV, None)


__all__ = ["expose_detector_modules", "expose_interpreter_scripts", "expose_workflow_package"]
