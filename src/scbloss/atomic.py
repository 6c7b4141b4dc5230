"""Writing files so that a reader never sees half of one: write to a temporary sibling, then rename over."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error it is removed.

    The temporary name keeps the suffix, so libraries that pick a format by extension (matplotlib) still do.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def save_figure(figure, png: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(png) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


__all__ = ["atomic_path", "save_figure", "write_text"]
