"""Leftovers of killed writes in a run folder, removed by the next process that may remove them.

- A write killed mid-way (SIGKILL, node lost) leaves its temporary file: ``.checkpoint.pt.<uuid>.tmp``
  (a whole checkpoint: 136 MB on ResNet-18), ``.<name>.<random>.tmp`` of any other atomic write.
  `remove_temp_files` deletes them when the run starts again: its trainer holds the lease, so no other
  writer of the folder is alive. A lease file's own temporary or set-aside file (``.lease.json.*``) may
  belong to another trainer racing for the lease right now: it is removed only once a minute old.
- A trainer killed between DONE and the pruning after it leaves both checkpoints and its lease.
  `tidy_done` applies the run's retention (`train.keep` of its config.yaml) and removes the stale lease
  and temporary files, on the next `train`, `sweep` or `status` of the folder; a DONE folder whose
  lease holder is still alive is left to it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import yaml

from dmlbench import rundir
from dmlbench.config.schema import TrainConfig
from dmlbench.rundir.lease import LEASE, move_aside, read_lease, stale_reason

TEMP_SUFFIX = ".tmp"
LEASE_LEFTOVER_AGE_S = 60.0  # a lease temporary this old is no live acquirer's


def _unlink(path: Path) -> int | None:
    """Remove `path`; its size, or None when it could not be removed (gone already, no permission)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError:
        return None
    return size


def remove_temp_files(run_dir: Path) -> dict[str, int]:
    """Delete the temporary files of interrupted writes in `run_dir`; returns name -> bytes freed. Call
    only while holding the folder's lease, or for a DONE folder whose lease holder is gone."""
    removed: dict[str, int] = {}
    now = time.time()
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            continue
        if name.startswith(f".{LEASE}."):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime < LEASE_LEFTOVER_AGE_S:
                    continue
        elif not name.endswith(TEMP_SUFFIX):
            continue
        size = _unlink(Path(entry.path))
        if size is not None:
            removed[name] = size
    return removed


def run_keep(run_dir: Path) -> str:
    """The run's retention (`train.keep` in its config.yaml); `full` (keep everything) when unreadable."""
    try:
        data = yaml.safe_load((Path(run_dir) / rundir.CONFIG).read_text())
        keep = (data.get("train") or {}).get("keep", TrainConfig.keep)
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return "full"
    return keep if keep in ("full", "weights", "none") else "full"


def prune_after_done(run_dir: Path, keep: str) -> dict[str, int]:
    """Retention once DONE: `full` keeps checkpoint.pt, `weights` and `none` drop every checkpoint file
    (a file left behind costs disk, never a result). Returns name -> bytes freed."""
    drop = [rundir.CHECKPOINT_PREVIOUS]
    if keep != "full":
        drop += [rundir.CHECKPOINT, rundir.CHECKPOINT_MANIFEST]
    removed = {}
    for name in drop:
        size = _unlink(Path(run_dir) / name)
        if size is not None:
            removed[name] = size
    return removed


def needs_tidy(names: set[str]) -> bool:
    """Whether a DONE folder with these entries may hold leftovers (cheap: from a listing alone)."""
    return bool(names & {rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS, LEASE}) or any(
        n.startswith(".") and (n.endswith(TEMP_SUFFIX) or n.startswith(f".{LEASE}.")) for n in names
    )


def tidy_done(run_dir: Path, queued_jobs: set[str] | None = None) -> dict[str, int]:
    """Prune a DONE folder left unpruned by a trainer killed after DONE: its retention, its stale lease
    and temporary files. Nothing is touched while a live holder still has the lease (it prunes itself),
    nor in a folder without DONE. Returns name -> bytes freed."""
    run_dir = Path(run_dir)
    if not rundir.is_done(run_dir):
        return {}
    info = read_lease(run_dir)
    if info is not None and stale_reason(info, queued_jobs=queued_jobs) is None:
        return {}
    removed = prune_after_done(run_dir, run_keep(run_dir))
    with contextlib.suppress(OSError):  # a read-only folder, another user's: left as it is
        if info is not None and move_aside(run_dir, info):
            removed[LEASE] = 0
    removed.update(remove_temp_files(run_dir))
    return removed
