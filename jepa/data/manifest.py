"""Read the list of files a dataset is made of, from a manifest file or a folder.

Accepted inputs:
- CSV (`path,label`, with CSV quoting: `"a,b.mp4",3`), TSV (`path<TAB>label`) or the
  space-separated `path label` files that V-JEPA and VideoMAE use; the label is optional: an
  integer class index, or (CSV / TSV, when no label of the file is an integer) a class name,
  numbered by the `classes` passed, by default the file's own names in sorted order; blank lines
  and `#` comments are ignored. Relative paths are relative to the manifest.
- The same with a header row, as pandas and HF datasets write them: `path,digit,direction,speed`.
  The path is the column named `path` (or `video`, `file_name`, ...), the label the column named
  by `label_column`, else one named `label`, else the only other column; with none of those
  the entries have no label. A row whose field count differs from the header's is a bad row.
- A folder: its video (or image) files, recursively, in sorted order. When every file sits in
  a first-level subfolder (`root/<class>/<file>`, as in ImageFolder or Kinetics), the label is
  the index of that subfolder in sorted order; otherwise there is no label.

Rows that cannot be used (missing file, wrong field count, a class name not in `classes`, wrong
kind of file) are skipped and reported with their line numbers; a manifest with no usable row
raises. `manifest_classes` gives the class names of a manifest or folder, so a train and a val
manifest can be numbered alike (`read_manifest(val, classes=manifest_classes(train))`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv"}
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
# Column names a header row gives the file path under (pandas / HF datasets / our own writers).
_PATH_COLUMNS = ("path", "video", "file", "filename", "file_name", "filepath", "file_path", "image", "video_path")
_MAX_REPORTED = 20

Kind = Literal["auto", "video", "image"]


class ManifestError(ValueError):
    """A manifest or folder gives no usable entry, or a row is bad and `strict` is on."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a dataset; `label` is None when the manifest has none."""

    path: str
    label: int | None = None


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether a path names a still image (by extension); everything else is read as video."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _kind_ok(path: str, kind: Kind) -> bool:
    if kind == "image":
        return is_image_path(path)
    if kind == "video":
        return not is_image_path(path)
    return True


def read_manifest(
    path_or_dir: str | os.PathLike,
    kind: Kind = "auto",
    check_exists: bool = True,
    strict: bool = False,
    classes: Sequence[str] | None = None,
    label_column: str | None = None,
) -> list[ManifestEntry]:
    """Entries of a manifest file or a folder of videos/images.

    `check_exists=False` skips the per-row file check (slow on network file systems for
    millions of rows; the dataset still replaces unreadable files at run time). `strict`
    turns any bad row into a ManifestError instead of a skipped, reported row. `classes`
    numbers class-name labels and class folders (default: their own names, sorted).
    `label_column` picks the label of a manifest with a header row by column name.
    """
    if kind not in ("auto", "video", "image"):
        raise ValueError(f"kind must be 'auto', 'video' or 'image', got {kind!r}")
    source = Path(path_or_dir)
    if source.is_dir():
        entries = _scan_folder(source, kind, classes)
        if not entries:
            wanted = {"auto": "video or image", "video": "video", "image": "image"}[kind]
            raise ManifestError(f"{source}: no {wanted} files found")
        _check_no_label_column(source, label_column)
        return entries
    if not source.is_file():
        raise ManifestError(f"{source}: no such manifest file or folder")
    return _read_rows(source, kind, check_exists, strict, classes, label_column)


def manifest_classes(path_or_dir: str | os.PathLike, label_column: str | None = None) -> list[str] | None:
    """Class names in label order: a folder's class subfolders, or a manifest's class-name
    labels, sorted; None when the labels are integer indices or absent."""
    source = Path(path_or_dir)
    if source.is_dir():
        _check_no_label_column(source, label_column)
        return _class_folders(source) if _class_layout(source) else None
    if not source.is_file():
        raise ManifestError(f"{source}: no such manifest file or folder")
    _, names = _label_texts(source, label_column)
    return sorted(set(names)) if names else None


def describe_classes(classes: Sequence[str]) -> str:
    """One line naming the classes in label order, for tools to print before they use them."""
    more = " ..." if len(classes) > 20 else ""
    return f"classes ({len(classes)}, numbered in this order): {', '.join(classes[:20])}{more}"


def _class_folders(root: Path) -> list[str]:
    # Numbered over all class folders, so video and image scans of one tree agree.
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_layout(root: Path) -> bool:
    """Whether every video or image under `root` sits in a first-level subfolder."""
    files = _media_files(root, "auto")
    return bool(files) and all(len(p.relative_to(root).parts) == 2 for p in files)


def _media_files(root: Path, kind: Kind) -> list[Path]:
    extensions = {"auto": VIDEO_EXTENSIONS | IMAGE_EXTENSIONS, "video": VIDEO_EXTENSIONS, "image": IMAGE_EXTENSIONS}[
        kind
    ]
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file() and not p.name.startswith(".")
    )


def _scan_folder(root: Path, kind: Kind, classes: Sequence[str] | None) -> list[ManifestEntry]:
    files = _media_files(root, kind)
    relative = [p.relative_to(root) for p in files]
    if files and all(len(r.parts) == 2 for r in relative):
        index = _class_index(classes if classes is not None else _class_folders(root))
        unknown = sorted({r.parts[0] for r in relative} - set(index))
        if unknown:
            raise ManifestError(f"{root}: class folders {unknown[:10]} are not among the {len(index)} classes given")
        return [ManifestEntry(str(p), index[r.parts[0]]) for p, r in zip(files, relative)]
    return [ManifestEntry(str(p), None) for p in files]


def _class_index(classes: Sequence[str]) -> dict[str, int]:
    index = {str(name): i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError(f"class names must be distinct, got {list(classes)[:20]}")
    return index


def _split_row(line: str, delimiter: str | None) -> list[str]:
    if delimiter is not None:
        if '"' not in line:  # the usual row: a plain split is ~5x faster than the csv module
            return [field.strip() for field in line.split(delimiter)]
        # CSV quoting, as pandas and spreadsheets write a path holding the delimiter or quotes.
        return [field.strip() for field in next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))]
    # Space-separated: the path may itself contain spaces, the label never does.
    head, _, tail = line.rpartition(" ")
    if head and _parse_label(tail.strip()) is not None:
        return [head.strip(), tail.strip()]
    return [line.strip()]


def _parse_label(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _check_no_label_column(source: Path, label_column: str | None) -> None:
    if label_column:
        raise ManifestError(
            f"{source}: label_column={label_column!r} needs a manifest file with a header row, not a folder"
        )


def _header(line: str, delimiter: str | None) -> list[str] | None:
    """The column names, lowercased, when the first row is a header (it names a path column)."""
    fields = [f.strip().lower() for f in (_split_row(line, delimiter) if delimiter else line.split())]
    return fields if any(f in _PATH_COLUMNS for f in fields) else None


def _columns(source: Path, header: list[str], label_column: str | None) -> tuple[int, int | None]:
    """(path column, label column or None) of a header, by name."""
    path_i = next(header.index(name) for name in _PATH_COLUMNS if name in header)
    if label_column is not None:
        if label_column.strip().lower() not in header:
            raise ManifestError(f"{source}: no column {label_column!r} for the label; the header has {header}")
        return path_i, header.index(label_column.strip().lower())
    if "label" in header:
        return path_i, header.index("label")
    if len(header) == 2:
        return path_i, 1 - path_i
    if len(header) > 2:
        others = [c for i, c in enumerate(header) if i != path_i]
        logger.info("%s: no label column chosen among %s (label_column=NAME picks one)", source, others)
    return path_i, None


def _delimiter(source: Path, head: list[str]) -> str | None:
    """Tab, comma, or None for space-separated, judged from the first rows."""
    if source.suffix.lower() == ".tsv" or any("\t" in line for line in head):
        return "\t"
    if any("," in line for line in head):
        return ","
    return None


# (line number, [path] or [path, label], why the row is bad or None)
Row = tuple[int, list[str], str | None]


def _rows(source: Path, label_column: str | None = None) -> tuple[list[Row], str | None]:
    """Every data row (no header, blanks or comments) as a path and an optional label, and the
    delimiter (None: space-separated)."""
    with open(source, encoding="utf-8-sig") as f:
        lines = [(number, line.rstrip("\r\n")) for number, line in enumerate(f, start=1)]
    lines = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ManifestError(f"{source}: the manifest is empty")
    delimiter = _delimiter(source, [line for _, line in lines[:20]])
    header = _header(lines[0][1], delimiter)
    if header is None and label_column is not None:
        raise ManifestError(
            f"{source}: label_column={label_column!r} needs a header row naming the columns (a path "
            f"column: {', '.join(_PATH_COLUMNS[:5])}, ...); the first row is {lines[0][1][:120]!r}"
        )
    if header is None or (delimiter is None and len(header) <= 2 and label_column is None):
        start = 0 if header is None else 1  # a `path label` header of a space-separated file
        return [(n, _split_row(line, delimiter), None) for n, line in lines[start:]], delimiter
    if delimiter is None:
        raise ManifestError(f"{source}: a header of several named columns needs a CSV or TSV manifest")
    path_i, label_i = _columns(source, header, label_column)
    rows: list[Row] = []
    for number, line in lines[1:]:
        fields = _split_row(line, delimiter)
        if len(fields) != len(header):
            rows.append((number, fields, f"expected {len(header)} fields as in the header, got {len(fields)}"))
        else:
            rows.append((number, [fields[path_i]] + ([] if label_i is None else [fields[label_i]]), None))
    return rows, delimiter


def _label_texts(source: Path, label_column: str | None = None) -> tuple[list[Row], list[str]]:
    """The rows, and the label texts when none of them is an integer (class names), else [].

    A file mixing both is read as integer labels with the others reported as bad rows: a typo
    among a million indices must not renumber the whole file."""
    rows, delimiter = _rows(source, label_column)
    if delimiter is None:  # space-separated: a label is an integer by construction of the split
        return rows, []
    texts = [fields[1] for _, fields, bad in rows if not bad and len(fields) == 2 and fields[1] != ""]
    return rows, texts if texts and all(_parse_label(t) is None for t in texts) else []


def _read_rows(
    source: Path,
    kind: Kind,
    check_exists: bool,
    strict: bool,
    classes: Sequence[str] | None,
    label_column: str | None,
) -> list[ManifestEntry]:
    rows, names = _label_texts(source, label_column)
    index = None
    if names or classes is not None:
        index = _class_index(classes if classes is not None else sorted(set(names)))
    base = source.parent
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    for number, fields, bad in rows:
        problem, entry = (bad, None) if bad else _parse_fields(fields, base, kind, check_exists, index)
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            entries.append(entry)
    if problems:
        message = f"{source}: skipped {len(problems)} bad row(s): " + "; ".join(problems[:_MAX_REPORTED])
        if len(problems) > _MAX_REPORTED:
            message += f"; ... and {len(problems) - _MAX_REPORTED} more"
        if strict:
            raise ManifestError(message)
        logger.warning(message)
    if not entries:
        raise ManifestError(f"{source}: no usable rows ({len(problems)} bad)")
    return entries


def _parse_fields(
    fields: list[str], base: Path, kind: Kind, check_exists: bool, index: dict[str, int] | None
) -> tuple[str | None, ManifestEntry | None]:
    if len(fields) > 2:
        return f"expected 'path[,label]' or a header row naming the columns, got {len(fields)} fields", None
    path = fields[0]
    if not path:
        return "empty path", None
    label = None
    if len(fields) == 2 and fields[1] != "":
        label = _parse_label(fields[1]) if index is None else index.get(fields[1])
        if label is None and index is None:
            return f"label {fields[1]!r} is not an integer (a file's labels are all indices or all class names)", None
        if label is None:
            return f"label {fields[1]!r} is not one of the {len(index)} classes", None
    resolved = path if os.path.isabs(path) else str(base / path)
    if not _kind_ok(resolved, kind):
        return f"{path} is not a {kind} file", None
    if check_exists and not os.path.isfile(resolved):
        return f"missing file {path}", None
    return None, ManifestEntry(resolved, label)
