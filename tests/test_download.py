import hashlib
import io
import tarfile
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
    assert list(tmp_path.iterdir()) == []


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
