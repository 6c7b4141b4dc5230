"""Resumable, verified downloads and safe extraction of dataset archives."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed after its retries, or whose content is not what was expected."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_once(url: str, partial: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``partial``, asking the server to resume where the file ends."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # asked past the end: the partial file is already whole
            return
        raise
    with response:
        resumed = response.status == 206
        if have and not resumed:
            log.info("%s: server ignored the range request; starting over", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(partial, "ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=partial.name.removesuffix(".part"),
                disable=not progress,
                mininterval=5,
            ) as bar,
        ):
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        if total is not None and partial.stat().st_size < total:
            raise ConnectionError(f"transfer ended at {partial.stat().st_size} of {total} bytes")


def download(
    url: str,
    destination: Path,
    md5: str | None = None,
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination``, resuming a partial ``.part`` file, retrying with exponential backoff.

    The file appears under its final name only after its md5 (when given) matches; a mismatch deletes the download
    and raises. HTTP 4xx errors other than 408/429 fail at once (they will not get better); others are retried.
    """
    destination = Path(destination)
    if destination.exists() and (md5 is None or md5sum(destination) == md5):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, partial, timeout, progress)
            break
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise DownloadError(f"{url}: {reason}") from error
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = str(getattr(error, "reason", error))
        if attempt == retries:
            raise DownloadError(f"{url}: failed after {retries + 1} attempts, last: {reason}")
        delay = backoff * 2**attempt
        log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, reason, delay, attempt + 1, retries)
        time.sleep(delay)
    if md5 is not None:
        actual = md5sum(partial)
        if actual != md5:
            partial.unlink()
            raise DownloadError(f"{url}: checksum mismatch for {destination.name}: md5 {actual}, expected {md5}")
    os.replace(partial, destination)
    return destination


def _check_member_name(name: str, archive: Path) -> None:
    normal = name.replace("\\", "/")
    parts = PurePosixPath(normal).parts
    if normal.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise DownloadError(
            f"{archive}: refused to extract: member {name!r} would be written outside the target folder"
        )


def unpack(archive: Path, into: Path) -> None:
    """Unpack a .tar/.tar.gz/.zip into the existing folder ``into``, refusing members that would escape it.

    Absolute paths and ``..`` components are refused by name, because tarfile's 'data' filter and zipfile silently
    rewrite some of them instead; links pointing outside (and device files) are refused by the 'data' filter.
    """
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                _check_member_name(info.filename, archive)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"{archive}: member {info.filename!r} is a symbolic link")
            handle.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as handle:
            for member in handle.getmembers():  # the 'data' filter would strip a leading '/' instead of refusing
                _check_member_name(member.name, archive)
            try:
                handle.extractall(into, filter="data")
            except tarfile.FilterError as error:
                raise DownloadError(f"{archive}: refused to extract: {error}") from error
    else:
        raise DownloadError(f"{archive}: neither a tar nor a zip archive")


def extract_all(archives: list[Path], target: Path) -> Path:
    """Unpack archives into ``target`` atomically: into a hidden sibling folder, renamed only once all succeeded."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for archive in archives:
            unpack(archive, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, target)
    return target


__all__ = ["DownloadError", "download", "extract_all", "md5sum", "unpack"]
