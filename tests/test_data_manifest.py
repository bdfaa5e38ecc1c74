"""Manifest formats and validation: every accepted layout, bad rows reported by line number."""

import logging

import pytest

from jepa.data.manifest import ManifestEntry, ManifestError, read_manifest


@pytest.fixture()
def files(tmp_path):
    names = ["a.mp4", "b c.mp4", "img.jpg"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize(
    "name, text",
    [
        ("m.csv", "path,label\na.mp4,3\nb c.mp4,5\n"),
        ("m.tsv", "a.mp4\t3\nb c.mp4\t5\n"),
        ("m.txt", "a.mp4 3\nb c.mp4 5\n"),
        ("m.csv", "# comment\n\na.mp4,3\r\nb c.mp4,5.0\n"),
    ],
)
def test_formats_give_the_same_entries(files, name, text):
    manifest = files / name
    manifest.write_text(text)
    entries = read_manifest(manifest)
    assert entries == [ManifestEntry(str(files / "a.mp4"), 3), ManifestEntry(str(files / "b c.mp4"), 5)]


def test_labels_are_optional_and_absolute_paths_kept(files):
    manifest = files / "m.csv"
    manifest.write_text(f"{files / 'a.mp4'}\nimg.jpg,\n")
    assert read_manifest(manifest) == [
        ManifestEntry(str(files / "a.mp4"), None),
        ManifestEntry(str(files / "img.jpg"), None),
    ]


def test_bad_rows_are_skipped_and_reported_with_line_numbers(files, caplog):
    manifest = files / "m.csv"
    manifest.write_text("path,label\na.mp4,1\nmissing.mp4,2\na.mp4,cat\na.mp4,1,2\n,4\n")
    with caplog.at_level(logging.WARNING):
        entries = read_manifest(manifest)
    assert entries == [ManifestEntry(str(files / "a.mp4"), 1)]
    message = caplog.text
    for line in (
        "line 3: missing file",
        "line 4: label 'cat' is not an integer",
        "line 5: expected",
        "line 6: empty path",
    ):
        assert line in message
    with pytest.raises(ManifestError, match="line 3"):
        read_manifest(manifest, strict=True)


def test_no_usable_rows_is_an_error(files):
    manifest = files / "m.csv"
    manifest.write_text("nope.mp4,1\nalso_missing.mp4,2\n")
    with pytest.raises(ManifestError, match="no usable rows"):
        read_manifest(manifest)
    manifest.write_text("\n# only a comment\n")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(manifest)
    with pytest.raises(ManifestError, match="no such"):
        read_manifest(files / "absent.csv")


def test_kind_filters_rows(files):
    manifest = files / "m.csv"
    manifest.write_text("a.mp4,1\nimg.jpg,2\n")
    assert [e.label for e in read_manifest(manifest, kind="image")] == [2]
    assert [e.label for e in read_manifest(manifest, kind="video")] == [1]
    assert len(read_manifest(manifest, check_exists=False)) == 2


def test_folders_with_and_without_class_subfolders(tmp_path):
    for cls, name in [("dog", "1.mp4"), ("cat", "2.webm"), ("cat", "3.mp4"), ("dog", "x.jpg")]:
        (tmp_path / "classes" / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "classes" / cls / name).write_bytes(b"x")
    videos = read_manifest(tmp_path / "classes", kind="video")
    assert [(e.path.split("/")[-1], e.label) for e in videos] == [("2.webm", 0), ("3.mp4", 0), ("1.mp4", 1)]
    images = read_manifest(tmp_path / "classes", kind="image")
    assert [(e.path.split("/")[-1], e.label) for e in images] == [("x.jpg", 1)]
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "v.mp4").write_bytes(b"x")
    (tmp_path / "flat" / "notes.txt").write_text("ignored")
    assert read_manifest(tmp_path / "flat") == [ManifestEntry(str(tmp_path / "flat" / "v.mp4"), None)]
    with pytest.raises(ManifestError, match="no image files"):
        read_manifest(tmp_path / "flat", kind="image")


def test_csv_quoting_as_pandas_writes_it(files):
    """A path holding the delimiter or a quote is quoted in CSV (pandas, spreadsheets, Python's
    csv module, which jepa's own manifest writers use); it was split into extra fields."""
    import csv

    (files / "x,y.mp4").write_bytes(b"x")
    (files / 'say "hi".mp4').write_bytes(b"x")
    with open(files / "m.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["path", "label"], ["x,y.mp4", 1], ['say "hi".mp4', 2], ["b c.mp4", 3]])
    assert read_manifest(files / "m.csv") == [
        ManifestEntry(str(files / "x,y.mp4"), 1),
        ManifestEntry(str(files / 'say "hi".mp4'), 2),
        ManifestEntry(str(files / "b c.mp4"), 3),
    ]
    (files / "q.tsv").write_text('"path"\t"label"\n"x,y.mp4"\t4\n')
    assert read_manifest(files / "q.tsv") == [ManifestEntry(str(files / "x,y.mp4"), 4)]


def test_class_name_labels_are_numbered_alike_across_manifests(files, tmp_path, caplog):
    """Class names as labels (CSV/TSV) are numbered by `classes`, by default the file's names
    sorted; a val manifest missing a class keeps the train numbering when given its classes."""
    from jepa.data.manifest import manifest_classes

    (files / "train.csv").write_text("path,label\na.mp4,fox\nb c.mp4,cat\nimg.jpg,dog\n")
    (files / "val.csv").write_text("path,label\na.mp4,fox\nb c.mp4,emu\n")
    classes = manifest_classes(files / "train.csv")
    assert classes == ["cat", "dog", "fox"]
    assert [e.label for e in read_manifest(files / "train.csv")] == [2, 0, 1]
    assert [e.label for e in read_manifest(files / "val.csv")] == [1, 0], "on its own: emu=0, fox=1"
    with caplog.at_level(logging.WARNING):
        val = read_manifest(files / "val.csv", classes=classes)
    assert val == [ManifestEntry(str(files / "a.mp4"), 2)] and "'emu' is not one of the 3 classes" in caplog.text
    (files / "ints.csv").write_text("a.mp4,0\nb c.mp4,1\n")
    assert manifest_classes(files / "ints.csv") is None

    root = tmp_path / "folders"
    for name in ("zebra/1.mp4", "ant/2.mp4", "ant/3.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "README.md").write_text("not a video")
    assert manifest_classes(root) == ["ant", "zebra"]
    assert [e.label for e in read_manifest(root, classes=["zebra", "ant"])] == [1, 1, 0]
    with pytest.raises(ManifestError, match="'zebra'"):
        read_manifest(root, classes=["ant"])


def test_header_rows_pick_path_and_label_columns_by_name(files, caplog):
    """Manifests as pandas and HF datasets write them: a header row, a path column and several
    label columns, chosen with `label_column` (they were refused whole as 'got 4 fields')."""
    from jepa.data.manifest import manifest_classes

    a, bc = str(files / "a.mp4"), str(files / "b c.mp4")
    (files / "m.csv").write_text('path,digit,direction,speed\na.mp4,3,left,1.5\n"b c.mp4",5,up,2.5\n')
    assert [e.label for e in read_manifest(files / "m.csv", label_column="digit")] == [3, 5]
    assert read_manifest(files / "m.csv", label_column="Direction") == [ManifestEntry(a, 0), ManifestEntry(bc, 1)]
    assert manifest_classes(files / "m.csv", label_column="direction") == ["left", "up"]
    with caplog.at_level(logging.INFO, logger="jepa.data.manifest"):
        assert read_manifest(files / "m.csv") == [ManifestEntry(a, None), ManifestEntry(bc, None)]
    assert "label_column=NAME" in caplog.text and "'speed'" in caplog.text
    # pandas' to_csv writes its index as an unnamed first column; HF datasets name the path file_name.
    (files / "p.csv").write_text(",path,digit\n0,a.mp4,3\n1,b c.mp4,5\n")
    assert read_manifest(files / "p.csv", label_column="digit") == [ManifestEntry(a, 3), ManifestEntry(bc, 5)]
    (files / "hf.tsv").write_text("label\tfile_name\n7\ta.mp4\n")
    assert read_manifest(files / "hf.tsv") == [ManifestEntry(a, 7)]
    (files / "only.csv").write_text("path\na.mp4\nb c.mp4\n")
    assert read_manifest(files / "only.csv") == [ManifestEntry(a, None), ManifestEntry(bc, None)]
    (files / "plain.csv").write_text("a.mp4,3\nb c.mp4,5\n")  # headerless forms are unchanged
    assert read_manifest(files / "plain.csv") == [ManifestEntry(a, 3), ManifestEntry(bc, 5)]


def test_header_errors_name_the_columns(files, caplog):
    (files / "m.csv").write_text("path,digit,direction\na.mp4,3,left\nb c.mp4,5\n")
    with pytest.raises(ManifestError, match=r"no column 'colour' .*\['path', 'digit', 'direction'\]"):
        read_manifest(files / "m.csv", label_column="colour")
    with caplog.at_level(logging.WARNING):
        assert read_manifest(files / "m.csv", label_column="digit") == [ManifestEntry(str(files / "a.mp4"), 3)]
    assert "line 3: expected 3 fields as in the header, got 2" in caplog.text
    (files / "nopath.csv").write_text("clip,digit\na.mp4,3\n")
    with pytest.raises(ManifestError, match="needs a header row naming the columns .*path"):
        read_manifest(files / "nopath.csv", label_column="digit")
    (files / "plain.csv").write_text("a.mp4,3\n")
    with pytest.raises(ManifestError, match="needs a header row"):
        read_manifest(files / "plain.csv", label_column="digit")
    with pytest.raises(ManifestError, match="not a folder"):
        read_manifest(files, label_column="digit")
    (files / "wide.txt").write_text("path digit direction\na.mp4 3 left\n")
    with pytest.raises(ManifestError, match="needs a CSV or TSV"):
        read_manifest(files / "wide.txt")
