"""Getting a real dataset onto disk: download + verify + extract, or adopt a copy extracted elsewhere."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..atomic import file_lock
from .download import DownloadError, download, extract_all
from .sources import DATASETS, archive_url

log = logging.getLogger(__name__)

# What each dataset's folder holds once extracted; a folder missing any of these is not the dataset.
LAYOUT = {
    "voc": ("VOCdevkit", ["VOC2007/Annotations", "VOC2007/ImageSets/Main/test.txt", "VOC2012/JPEGImages"]),
    "coco": ("coco", ["annotations/instances_train2017.json", "annotations/instances_val2017.json", "val2017"]),
}
# COCO's zips unpack to train2017/, annotations/, ... at the top; VOC's tars to VOCdevkit/ already.
_INNER = {"voc": "VOCdevkit", "coco": ""}


def dataset_dir(name: str, root: Path) -> Path:
    return Path(root) / LAYOUT[name][0]


def check_layout(name: str, folder: Path) -> None:
    missing = [part for part in LAYOUT[name][1] if not (Path(folder) / part).exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: not an extracted {name.upper()} folder (missing {', '.join(missing)})")


def prepare(
    name: str, root: Path, mirror: str | None = None, existing: Path | None = None, progress: bool = True
) -> Path:
    """Make ``root/<VOCdevkit|coco>`` hold the dataset and return it.

    With ``existing``, an already-extracted copy is checked and linked in place of a download. Otherwise every
    archive is downloaded (resumably, md5-verified) into ``root/archives`` and all are extracted together; the
    dataset folder appears, by a rename, only when everything succeeded.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root)
    final = dataset_dir(name, root)
    if existing is not None:
        existing = Path(existing).resolve()
        check_layout(name, existing)
        root.mkdir(parents=True, exist_ok=True)
        if final.is_symlink() or final.exists():
            if final.resolve() != existing:
                raise FileExistsError(f"{final} already exists and is not {existing}")
        else:
            os.symlink(existing, final)
        return final
    with file_lock(root / f".{name}.lock"):  # a second process preparing the same dataset waits, then adopts it
        return _download_and_extract(name, root, final, mirror, progress)


def _download_and_extract(name: str, root: Path, final: Path, mirror: str | None, progress: bool) -> Path:
    if final.exists():
        check_layout(name, final)
        return final
    base_url, archives = DATASETS[name]
    base_url = mirror or base_url
    files = []
    for archive in archives:
        url = archive_url(base_url, archive)
        log.info("fetching %s", url)
        files.append(download(url, root / "archives" / archive.filename, archive.md5, progress=progress))
    staging_parent = root / f".{name}.unpacked"
    shutil.rmtree(staging_parent, ignore_errors=True)
    extract_all(files, staging_parent)
    inner = staging_parent / _INNER[name] if _INNER[name] else staging_parent
    try:
        check_layout(name, inner)
    except FileNotFoundError as error:
        raise DownloadError(f"archives of {name} did not unpack to the expected layout: {error}") from error
    os.replace(inner, final)
    if inner != staging_parent:
        staging_parent.rmdir()
    return final


__all__ = ["LAYOUT", "check_layout", "dataset_dir", "prepare"]
