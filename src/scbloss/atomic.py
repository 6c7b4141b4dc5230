"""Writing files so that a reader never sees half of one (write to a temporary sibling, then rename over), and so
that two writers never write the same one at once (a lock file)."""

from __future__ import annotations

import contextlib
import os
import re
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


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` left by processes that no longer run (a
    writer killed mid-write); the paths removed."""
    removed = []
    for temporary in Path(folder).glob(".*.tmp*"):
        match = re.search(r"\.tmp(\d+)", temporary.name)
        if match is None or _running(int(match.group(1))):
            continue
        temporary.unlink(missing_ok=True)
        removed.append(temporary)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def save_figure(figure, png: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(png) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed): a second process waits here until the first is done.

    fcntl's lock is released by the kernel when its holder dies, so a killed process never leaves it stuck.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["atomic_path", "file_lock", "remove_stale_temporaries", "save_figure", "write_text"]
