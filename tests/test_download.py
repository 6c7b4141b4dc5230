import hashlib
import io
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from scbloss.data import download as dl
from scbloss.data.download import DownloadError, download, extract_all
from scbloss.data.prepare import prepare
from scbloss.data.sources import DATASETS, Archive

from local_http import LocalServer


@pytest.fixture(autouse=True)
def _no_backoff_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(dl.time, "sleep", slept.append)
    return slept


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def test_download_and_verify(tmp_path):
    body = bytes(range(256)) * 4000
    with LocalServer() as server:
        server.files["/a.bin"] = body
        path = download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert path.read_bytes() == body
    assert not (tmp_path / "a.bin.part").exists()


def test_resume_after_a_truncated_transfer(tmp_path, _no_backoff_sleep):
    body = bytes(range(256)) * 4000
    with LocalServer() as server:
        server.files["/a.bin"] = body
        server.truncate_once.add("/a.bin")
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == body
    assert server.requests == [("/a.bin", None), ("/a.bin", f"bytes={len(body) // 2}-")]
    assert len(_no_backoff_sleep) == 1


def test_checksum_mismatch_leaves_nothing(tmp_path):
    with LocalServer() as server:
        server.files["/a.bin"] = b"corrupted"
        with pytest.raises(DownloadError, match="checksum mismatch for a.bin"):
            download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(b"original"), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [".a.bin.lock"]  # lock files stay: unlinking one races


def test_404_fails_at_once_and_500_after_retries(tmp_path, _no_backoff_sleep):
    with LocalServer() as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"{server.base}/missing.bin", tmp_path / "m.bin", progress=False)
        assert len(server.requests) == 1
        server.files["/flaky.bin"] = b"x"
        server.fail["/flaky.bin"] = [500] * 10
        with pytest.raises(DownloadError, match=r"failed after 3 attempts, last: .*500"):
            download(f"{server.base}/flaky.bin", tmp_path / "f.bin", retries=2, progress=False)
    assert len(server.requests) == 1 + 3
    assert _no_backoff_sleep == [2.0, 4.0]  # exponential backoff
    assert not (tmp_path / "f.bin").exists()


def test_transient_500_then_success(tmp_path):
    with LocalServer() as server:
        server.files["/a.bin"] = b"payload"
        server.fail["/a.bin"] = [500, 503]
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(b"payload"), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == b"payload"


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "ok/../../escape.txt"])
def test_tar_member_escaping_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar({"fine.txt": b"ok", name: b"evil"}))
    with pytest.raises(DownloadError, match="refused to extract"):
        extract_all([archive], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]


def test_tar_link_out_of_the_folder_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "bad.tar").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="refused to extract"):
        extract_all([tmp_path / "bad.tar"], tmp_path / "out")


def test_zip_member_escaping_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("../escape.txt", b"evil")
    (tmp_path / "bad.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="outside the target folder"):
        extract_all([tmp_path / "bad.zip"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def voc_mirror(monkeypatch):
    """A local server holding small VOC-shaped archives, registered with their md5 in place of the real ones."""
    voc = "VOCdevkit/VOC{}/"
    archives = {
        "VOCtrainval_06-Nov-2007.tar": _tar(
            {voc.format(2007) + "Annotations/1.xml": b"<a/>", voc.format(2007) + "ImageSets/Main/trainval.txt": b"1\n"}
        ),
        "VOCtest_06-Nov-2007.tar": _tar({voc.format(2007) + "ImageSets/Main/test.txt": b"2\n"}),
        "VOCtrainval_11-May-2012.tar": _tar({voc.format(2012) + "JPEGImages/3.jpg": b"jpg"}),
    }
    base, official = DATASETS["voc"]
    fake = [Archive(a.filename, _md5(archives[a.filename]), a.path) for a in official]
    monkeypatch.setitem(DATASETS, "voc", (base, fake))
    with LocalServer() as server:
        for archive in fake:
            server.files[f"/{archive.path}/{archive.filename}"] = archives[archive.filename]
        yield server


def test_prepare_voc_from_a_mirror(tmp_path, voc_mirror):
    folder = prepare("voc", tmp_path / "data", mirror=voc_mirror.base, progress=False)
    assert folder == tmp_path / "data" / "VOCdevkit"
    assert (folder / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text() == "2\n"
    assert (folder / "VOC2012" / "JPEGImages" / "3.jpg").is_file()


def test_prepare_with_a_bad_archive_leaves_no_dataset(tmp_path, voc_mirror):
    voc_mirror.files["/voc2012/VOCtrainval_11-May-2012.tar"] = b"tampered"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        prepare("voc", tmp_path / "data", mirror=voc_mirror.base, progress=False)
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_prepare_adopts_an_existing_extraction(tmp_path):
    existing = tmp_path / "elsewhere" / "VOCdevkit"
    for part in ("VOC2007/Annotations", "VOC2007/ImageSets/Main", "VOC2012/JPEGImages"):
        (existing / part).mkdir(parents=True)
    (existing / "VOC2007/ImageSets/Main/test.txt").write_text("1\n")
    folder = prepare("voc", tmp_path / "data", existing=existing)
    assert folder.is_symlink() and folder.resolve() == existing.resolve()
    with pytest.raises(FileNotFoundError, match="not an extracted VOC folder"):
        prepare("voc", tmp_path / "other", existing=tmp_path / "elsewhere")


def test_a_server_that_ignores_range_gets_the_file_from_the_start(tmp_path):
    body = bytes(range(256)) * 400
    (tmp_path / "a.bin.part").write_bytes(body[:1000])  # an earlier attempt's prefix
    with LocalServer() as server:
        server.files["/a.bin"] = body
        server.ignore_range.add("/a.bin")
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == body
    assert server.requests == [("/a.bin", "bytes=1000-")]


def test_a_206_at_the_wrong_offset_is_not_appended(tmp_path):
    body = bytes(range(256)) * 400
    (tmp_path / "a.bin.part").write_bytes(body[:1000])
    with LocalServer() as server:
        server.files["/a.bin"] = body
        server.wrong_offset["/a.bin"] = 24  # answers "bytes 1024-..." to "bytes=1000-"
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == body
    assert server.requests == [("/a.bin", "bytes=1000-"), ("/a.bin", None)]


def test_no_content_length_reads_to_the_end_and_checks_the_md5(tmp_path):
    body = bytes(range(256)) * 400
    with LocalServer() as server:
        server.files["/a.bin"] = body
        server.no_length.add("/a.bin")
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == body


def test_a_stale_part_that_is_not_a_prefix_is_downloaded_again(tmp_path):
    body = bytes(range(256)) * 400
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)  # left by a download of another file version
    with LocalServer() as server:
        server.files["/a.bin"] = body
        download(f"{server.base}/a.bin", tmp_path / "a.bin", md5=_md5(body), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == body
    assert server.requests == [("/a.bin", "bytes=1000-"), ("/a.bin", None)]


def test_a_local_write_error_is_named_and_not_retried(tmp_path, monkeypatch):
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and "b" in mode and ("a" in mode or "w" in mode):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    with LocalServer() as server:
        server.files["/a.bin"] = b"payload"
        with pytest.raises(dl.LocalFileError, match=r"a.bin.part: cannot write the download \(No space left"):
            download(f"{server.base}/a.bin", tmp_path / "a.bin", progress=False)
    assert len(server.requests) == 1


_DOWNLOAD_IN_A_PROCESS = """
import sys
from scbloss.data.download import download
download(sys.argv[1], sys.argv[2], md5=sys.argv[3], progress=False)
"""


def test_two_processes_downloading_the_same_archive(tmp_path):
    body = bytes(range(256)) * 4096  # 1 MiB, sent in 16 chunks of 64 KiB, 50 ms apart
    with LocalServer() as server:
        server.files["/a.bin"] = body
        server.seconds_per_chunk["/a.bin"] = 0.05
        command = [
            sys.executable,
            "-c",
            _DOWNLOAD_IN_A_PROCESS,
            f"{server.base}/a.bin",
            str(tmp_path / "a.bin"),
            _md5(body),
        ]
        first = subprocess.Popen(command)
        time.sleep(0.2)
        second = subprocess.Popen(command)
        assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    assert (tmp_path / "a.bin").read_bytes() == body
    assert server.requests == [("/a.bin", None)]  # the second waited for the first and found the file done


_PREPARE_KILLED_WHILE_EXTRACTING = """
import os, sys, time
from pathlib import Path
from scbloss.data import download, prepare
from scbloss.data.sources import DATASETS, Archive

real_unpack = download.unpack
def unpack_then_stall(archive, into):
    real_unpack(archive, into)
    Path(sys.argv[3]).touch()  # one archive is out: the test kills us now
    time.sleep(60)
download.unpack = unpack_then_stall
archives = [Archive(a.filename, a.md5, a.path) for a in eval(sys.argv[2])]
DATASETS["voc"] = (DATASETS["voc"][0], archives)
prepare.prepare("voc", Path(sys.argv[4]), mirror=sys.argv[1], progress=False)
"""


def test_a_kill_during_extraction_leaves_no_dataset_and_a_rerun_completes(tmp_path, voc_mirror):
    archives = repr([(a.filename, a.md5, a.path) for a in DATASETS["voc"][1]])
    marker, root = tmp_path / "one-archive-out", tmp_path / "data"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PREPARE_KILLED_WHILE_EXTRACTING.replace(
                "Archive(a.filename, a.md5, a.path) for a in", "Archive(*a) for a in"
            ),
            voc_mirror.base,
            archives,
            str(marker),
            str(root),
        ]
    )
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "extraction never started"
    child.kill()
    child.wait(timeout=30)
    assert not (root / "VOCdevkit").exists()  # half an extraction is never where a reader looks
    folder = prepare("voc", root, mirror=voc_mirror.base, progress=False)
    assert (folder / "VOC2012" / "JPEGImages" / "3.jpg").is_file()
    assert not [p for p in root.iterdir() if "extracting" in p.name or "unpacked" in p.name]


def test_a_full_disk_during_extraction_names_the_archive_and_leaves_nothing(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar({"x.txt": b"1"}))

    def disk_full(archive, into):
        (into / "half.txt").write_text("part")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dl, "unpack", disk_full)
    with pytest.raises(DownloadError, match=r"a.tar: cannot extract into .* \(No space left on device\)"):
        extract_all([archive], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]
