"""Atomic writes: a file or a directory appears whole under its final name or not at all.

Every writer in jepa (checkpoints, exports, probes, embeddings, shards, generated data, world
models, trajectories) writes to a temporary name beside the target, flushes it to disk, then
renames it over the target: a rename within one folder is atomic on POSIX file systems, so a
run killed mid-write leaves the previous version (or nothing) rather than a torn file. A
failed write removes its temporary file or folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary names start with this, so leftovers of a killed writer are easy to find and sweep.
STAGING_PREFIX = ".tmp-"


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder: so a rename into it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `final` to write to; renamed over `final` when the block ends
    without an error, removed when it raises."""
    final = Path(final)
    tmp = final.with_name(f"{STAGING_PREFIX}{final.name}.{os.getpid()}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_dir(final: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """An empty staging folder beside `final` to fill; when the block ends without an error its
    files are flushed and it replaces `final`; when it raises, the staging folder is removed.

    `replace`: an existing `final` is removed first (the one moment two renames cannot cover);
    False: only an empty one is, and a non-empty one raises OSError, so a writer racing another
    process for the same folder keeps the other's complete copy."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{final.name}.", dir=final.parent))
    try:
        yield staging
        for path in staging.rglob("*"):
            fsync_path(path)
        fsync_path(staging)
        if final.exists() and replace:
            shutil.rmtree(final)
        elif final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.replace(staging, final)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
