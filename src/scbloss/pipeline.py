"""Helpers the Snakemake workflow calls when it loads."""

from __future__ import annotations

import os
import sys


def expose_interpreter_scripts() -> None:
    """Put the folder of the running Python (a venv's bin/) first on PATH, so rules find its `scbloss` command
    without the venv being activated. In --sdm conda/apptainer jobs that folder is absent and their own is used."""
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


__all__ = ["expose_interpreter_scripts"]
