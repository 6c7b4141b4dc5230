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

from ..atomic import file_lock

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


class _RestartFromZero(Exception):
    """The server answered a resumed request with the wrong part of the file."""


def _content_range_start(header: str | None) -> int | None:
    """The first byte of a 206 answer ("bytes START-END/TOTAL"), or None if the header says nothing usable."""
    if not header or not header.startswith("bytes "):
        return None
    try:
        return int(header[6:].split("-", 1)[0])
    except ValueError:
        return None


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
        if resumed and _content_range_start(response.headers.get("Content-Range")) != have:
            log.warning(
                "%s: server resumed at %s instead of byte %d; starting over",
                url,
                response.headers.get("Content-Range"),
                have,
            )
            raise _RestartFromZero
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        try:
            out = open(partial, "ab" if resumed else "wb")
        except OSError as error:
            raise LocalFileError(partial, error) from error
        with (
            out,
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
                try:
                    out.write(block)
                except OSError as error:
                    raise LocalFileError(partial, error) from error
                bar.update(len(block))
        if total is not None and partial.stat().st_size < total:
            raise ConnectionError(f"transfer ended at {partial.stat().st_size} of {total} bytes")


class LocalFileError(DownloadError):
    """Writing the download failed on this machine (disk full, no permission): retrying would not help."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"{path}: cannot write the download ({error.strerror or error})")


def _fetch_with_retries(url: str, partial: Path, retries: int, backoff: float, timeout: float, progress: bool):
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, partial, timeout, progress)
            return
        except _RestartFromZero:
            partial.unlink(missing_ok=True)
            reason = "server resumed at the wrong offset"
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise DownloadError(f"{url}: {reason}") from error
        except LocalFileError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = str(getattr(error, "reason", error))
        if attempt == retries:
            raise DownloadError(f"{url}: failed after {retries + 1} attempts, last: {reason}")
        delay = backoff * 2**attempt
        log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, reason, delay, attempt + 1, retries)
        time.sleep(delay)


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

    The file appears under its final name only after its md5 (when given) matches. A mismatch after resuming a
    ``.part`` left by an earlier attempt (which may not be a prefix of the file) starts over once from byte 0; a
    mismatch of a whole download deletes it and raises. HTTP 4xx errors other than 408/429 fail at once (they will
    not get better), as do local write errors; others are retried. A second process downloading the same file
    waits for the first (a lock beside it) and then finds it done.
    """
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    with file_lock(destination.with_name(f".{destination.name}.lock")):
        if destination.exists() and (md5 is None or md5sum(destination) == md5):
            return destination
        resumed = partial.exists() and partial.stat().st_size > 0
        _fetch_with_retries(url, partial, retries, backoff, timeout, progress)
        if md5 is not None and md5sum(partial) != md5 and resumed:
            log.warning("%s: the resumed download does not match its md5; downloading it again from the start", url)
            partial.unlink()
            _fetch_with_retries(url, partial, retries, backoff, timeout, progress)
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
            try:
                unpack(archive, staging)
            except OSError as error:  # disk full, no permission: name the archive and the folder
                raise DownloadError(
                    f"{archive}: cannot extract into {staging.parent} ({error.strerror or error})"
                ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, target)
    return target


__all__ = ["DownloadError", "LocalFileError", "download", "extract_all", "md5sum", "unpack"]
