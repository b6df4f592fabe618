"""The image-scan cache: which files were already fully decoded and found good, keyed by (size, mtime).

One tab-separated file per dataset root under the user's cache folder. It only ever saves work: a
missing, foreign or corrupt cache file reads as empty, and a failed write is logged, never raised.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from dmlbench.rundir import atomic_write_text

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "DMLBENCH_CACHE_DIR"  # a folder, or "off" to disable the scan cache
SCAN_CACHE_HEADER = "# dmlbench image-scan cache v1"

FileStamp = tuple[int, int]  # (st_size, st_mtime_ns): a cached verdict holds only while both are unchanged


def cache_dir() -> Path | None:
    """Where dmlbench keeps caches: $DMLBENCH_CACHE_DIR, else $XDG_CACHE_HOME/dmlbench, else
    ~/.cache/dmlbench; None when DMLBENCH_CACHE_DIR is "off"."""
    chosen = os.environ.get(CACHE_DIR_ENV, "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dmlbench"


def scan_cache_path(root: str | Path) -> Path | None:
    """The scan-cache file of one dataset root (one file per resolved root), or None when caching is off."""
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return folder / f"image-scan-{digest}.tsv"


def read_scan_cache(path: Path, root: Path) -> dict[str, FileStamp]:
    """Relative path -> stamp of files verified good. Anything unreadable or malformed counts as empty:
    the cache only ever saves work, so a bad cache file must never fail a run."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    lines = text.split("\n")  # not splitlines(): a path may hold \r or other line-break characters
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != f"{SCAN_CACHE_HEADER}\t{Path(root).resolve()}":
        return {}  # not ours, an older format, or (vanishingly unlikely) another root with the same hash
    entries: dict[str, FileStamp] = {}
    for line in lines[1:]:
        fields = line.split("\t", 2)  # the path comes last, so a tab inside it survives
        if len(fields) != 3 or not fields[2]:
            return {}  # a corrupt line: trust nothing in the file
        try:
            entries[fields[2]] = (int(fields[0]), int(fields[1]))
        except ValueError:
            return {}
    return entries


def write_scan_cache(path: Path, root: Path, good: dict[str, FileStamp], bad: Sequence[str] = ()) -> None:
    """Merge `good` into the cache file and drop `bad`, atomically; errors are logged, never raised.

    Several sweep cells may scan the same root at once: re-reading just before the write keeps their
    entries; a lost race loses only entries (re-verified next time), never admits a bad file.
    """
    try:
        entries = read_scan_cache(path, root)
        entries.update(good)
        for rel in bad:
            entries.pop(rel, None)
        rows = [f"{size}\t{mtime_ns}\t{rel}" for rel, (size, mtime_ns) in sorted(entries.items())]
        atomic_write_text(path, "\n".join([f"{SCAN_CACHE_HEADER}\t{Path(root).resolve()}", *rows]) + "\n")
    except OSError as err:
        logger.warning("image-scan cache not written (%s): %s", path, err)


def file_stamp(path: Path) -> FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)
