from scbloss.cli import main


def test_toy_then_check(tmp_path, capsys):
    assert main(["data", "toy", "--out", str(tmp_path / "toy"), "--images", "12", "--test-images", "4"]) == 0
    assert main(["data", "check", str(tmp_path / "toy")]) == 0
    out = capsys.readouterr().out
    assert "## toy_voc/trainval: 12 images" in out and "## toy_coco/val: 4 images" in out
    assert "small" in out and "PROBLEM" not in out


def test_check_reports_problems_with_the_file(tmp_path, capsys):
    main(["data", "toy", "--out", str(tmp_path / "toy"), "--images", "4", "--test-images", "2"])
    (tmp_path / "toy/VOCdevkit/VOC2007/Annotations/000002.xml").write_text("<annotation>")
    assert main(["data", "check", str(tmp_path / "toy")]) == 1
    assert "PROBLEM: toy_voc/trainval:" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "no toy, VOCdevkit or COCO layout found" in capsys.readouterr().out


def test_download_error_is_one_clear_line(tmp_path, capsys):
    assert main(["data", "download", "--dataset", "voc", "--root", str(tmp_path), "--existing", str(tmp_path)]) == 2
    assert "not an extracted VOC folder" in capsys.readouterr().err
