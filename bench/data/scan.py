"""The full-decode scan for missing, truncated and unreadable images, and the run's verdict on them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.data.images import image_problem
from dmlbench.data.scan_cache import FileStamp, file_stamp, read_scan_cache, scan_cache_path, write_scan_cache

MAX_LISTED_BAD = 20
SKIP_HINT = "set data.skip_bad_images=true to exclude them"
SCAN_CHUNK = 64  # files per thread task of the scan


def scan_images(
    root: str | Path,
    paths: Sequence[str],
    progress: bool = True,
    workers: int | None = None,
    *,
    use_cache: bool = True,
) -> list[tuple[str, str]]:
    """Fully decode every image; return (relative path, reason) for each one that fails, in input order.

    Threads overlap the decoding (PIL releases the GIL while decoding). With ``use_cache`` (and
    DMLBENCH_CACHE_DIR not "off"), files already verified good with the same size and mtime are only
    stat()ed; bad files are never cached, so they are decoded (and reported) every time.
    """
    root = Path(root)
    workers = workers or min(8, os.cpu_count() or 1)
    from dmlbench.progress import progress_bar  # only needed when scanning

    cache_file = scan_cache_path(root) if use_cache else None
    cached = read_scan_cache(cache_file, root) if cache_file is not None else {}

    Probe = tuple[str | None, FileStamp | None, bool]  # (problem, stamp taken before decoding, decoded?)

    def probe(rel: str) -> Probe:
        # Stamp first: if the file changes during the decode, the next scan sees a new stamp.
        stamp = file_stamp(root / rel)
        if stamp is not None and cached.get(rel) == stamp:
            return None, stamp, False
        return image_problem(root / rel), stamp, True

    def probe_chunk(chunk: Sequence[str]) -> list[Probe]:
        return [probe(rel) for rel in chunk]

    # Explicit chunks: ThreadPoolExecutor.map ignores `chunksize`, and one future per file costs more
    # than the stat() of a cached file.
    chunks = [paths[i : i + SCAN_CHUNK] for i in range(0, len(paths), SCAN_CHUNK)]
    results: list[Probe] = []
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        progress_bar(total=len(paths), desc="checking images", unit="img", disable=not progress, leave=False) as bar,
    ):
        for chunk_results in pool.map(probe_chunk, chunks):
            results.extend(chunk_results)
            bar.update(len(chunk_results))
    if cache_file is not None:
        newly_good = {
            rel: stamp
            for rel, (reason, stamp, decoded) in zip(paths, results, strict=True)
            if decoded and reason is None and stamp is not None and "\n" not in rel
        }
        bad_cached = [rel for rel, (reason, _, _) in zip(paths, results, strict=True) if reason and rel in cached]
        if newly_good or bad_cached:
            write_scan_cache(cache_file, root, newly_good, bad_cached)
    return [(rel, reason) for rel, (reason, _, _) in zip(paths, results, strict=True) if reason is not None]


def format_bad_images(bad: Sequence[tuple[str, str]], limit: int = MAX_LISTED_BAD) -> str:
    """'a.jpg (missing), b.jpg (truncated), ... and 3 more'.

    >>> format_bad_images([("a.jpg", "missing"), ("b.jpg", "truncated"), ("c.jpg", "missing")], limit=2)
    'a.jpg (missing), b.jpg (truncated) ... and 1 more'
    """
    shown = ", ".join(f"{p} ({why})" for p, why in bad[:limit])
    more = len(bad) - limit
    return shown + (f" ... and {more} more" if more > 0 else "")


def check_images_or_raise(
    index: DatasetIndex,
    positions: np.ndarray,
    skip_bad: bool,
    log: Callable[[str], None],
    progress: bool | None = None,
) -> np.ndarray:
    """The usable subset of `positions`. Bad images stop the run unless `skip_bad`; then they are logged.

    ``progress``: None shows the scan's progress bar only on a terminal.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if progress is None:
        progress = sys.stderr.isatty()
    rel_paths = [index.paths[i] for i in positions]
    bad = scan_images(index.root, rel_paths, progress=progress)
    if not bad:
        return positions
    listing = format_bad_images(bad)
    if not skip_bad:
        raise DatasetError(
            f"{index.name}: {len(bad)} of {len(positions)} images are missing or unreadable under "
            f"{index.root}: {listing}; fix or re-extract them, or {SKIP_HINT}"
        )
    bad_set = {p for p, _ in bad}
    keep = np.array([p not in bad_set for p in rel_paths], dtype=bool)
    log(f"{index.name}: excluded {len(bad)} unreadable images: {listing}")
    return positions[keep]
