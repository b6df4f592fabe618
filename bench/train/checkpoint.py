"""The run's checkpoint: model, loss, optimizer, scheduler, scaler, sampler and RNG state in one file.

Written after every epoch (and every `train.checkpoint_every_batches` steps), so a killed or
preempted run resumes from it and reaches the same result as an uninterrupted one.

Storage faults: a new checkpoint is written to a temporary file, synced and read back against the
size and sha256 of the bytes meant; only then does the current one become `checkpoint.prev.pt` and
the new one `checkpoint.pt`, and `checkpoint.json` records both files' size and sha256. Loading
verifies the latest against that record and falls back to the previous one (a warning in run.log);
when neither is usable the run restarts from scratch with a message saying so. A failed write
(`ENOSPC`, an I/O error) stops the run with one line and leaves the previous checkpoint in place.

Retention (`train.keep`, applied once the run is DONE, `dmlbench.rundir.tidy.prune_after_done`): `full`
keeps checkpoint.pt, `weights` keeps only the model's weights (`model.pt`), `none` keeps neither.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmlbench import rundir, samplers
from dmlbench.errors import DmlbenchError
from dmlbench.train.trainer import Trainer

# Keys every checkpoint holds; a file lacking one is not a checkpoint of ours.
REQUIRED_KEYS = frozenset({"epoch", "model", "loss", "optimizer", "scheduler", "sampler", "rng"})


class CheckpointWriteError(DmlbenchError, OSError):
    """A checkpoint could not be written (disk full, I/O error); the previous one is kept."""

    exit_code = 1
    label = "run stopped"


def save_checkpoint(
    run_dir: Path,
    trainer: Trainer,
    sampler_state: dict[str, Any],
    *,
    epoch: int,
    step: int = 0,
    epoch_progress: dict[str, Any] | None = None,
) -> None:
    """`sampler_state`: the sampler's state after the last batch trained on (`LoadedBatch.sampler_state`)."""
    state = {
        "epoch": epoch,  # number of completed epochs
        "step": step,  # completed steps of the next epoch (mid-epoch checkpoints), 0 at an epoch's end
        "epoch_progress": epoch_progress,  # that partial epoch's losses, stats and time so far
        "model": trainer.model.state_dict(),
        "loss": trainer.loss_fn.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
        "sampler": sampler_state,
        "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_verified(Path(run_dir), buffer.getvalue())


def _digest(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def read_manifest(run_dir: Path) -> dict[str, dict[str, Any]] | None:
    """checkpoint.json: file name -> {size, sha256}; None when absent, unreadable or without one well-formed
    entry (runs older than it, a damaged file): the checkpoints are then tried by loading them, never
    thrown away for want of a record."""
    try:
        data = json.loads((run_dir / rundir.CHECKPOINT_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    entries = {
        name: entry
        for name, entry in data.items()
        if isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
    }
    return entries or None


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync `data` to `path` (a new file); the one place checkpoint bytes reach the disk."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_verified(run_dir: Path, data: bytes) -> None:
    """Make `data` the latest checkpoint; the current one becomes the previous only after `data` is on
    disk and reads back with the size and sha256 meant."""
    latest, previous = run_dir / rundir.CHECKPOINT, run_dir / rundir.CHECKPOINT_PREVIOUS
    tmp = run_dir / f".{rundir.CHECKPOINT}.{uuid.uuid4().hex}.tmp"
    want = _digest(data)
    try:
        _write_file(tmp, data)
        got = file_digest(tmp)
        if got != want:
            raise OSError(f"it read back as {got['size']} bytes with another checksum ({want['size']} bytes written)")
        recorded = read_manifest(run_dir) or {}
        manifest = {rundir.CHECKPOINT: want}
        if latest.is_file():
            os.replace(latest, previous)
            if rundir.CHECKPOINT in recorded:
                manifest[rundir.CHECKPOINT_PREVIOUS] = recorded[rundir.CHECKPOINT]
        os.replace(tmp, latest)
        rundir.atomic_write_json(run_dir / rundir.CHECKPOINT_MANIFEST, manifest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"could not write the checkpoint in {run_dir}: {err.strerror or err}. The previous checkpoint is "
            "kept: free disk space (or fix the filesystem) and rerun; the run resumes from it"
        ) from err


def checkpoint_problem(path: Path, manifest: dict[str, dict[str, Any]] | None) -> str | None:
    """Why the checkpoint file at `path` cannot be trusted, or None. Any recorded entry may match it: a
    write interrupted between its renames leaves the previous file under the latest name's record."""
    if manifest is None:
        return None  # written before checksums were recorded: loading it is the only test
    got = file_digest(path)
    if got in manifest.values():
        return None
    sizes = sorted({int(e.get("size", -1)) for e in manifest.values() if isinstance(e, dict)})
    if got["size"] not in sizes:
        return f"is {got['size']} bytes, recorded {' or '.join(map(str, sizes))} (truncated or cut short)"
    return "does not match its recorded sha256 (corrupted)"


def _load_file(path: Path) -> dict[str, Any]:
    # Our own file; it holds RNG states, hence weights_only=False.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not set(state) >= REQUIRED_KEYS:
        raise ValueError("not a dmlbench checkpoint (keys missing)")
    return state


def load_checkpoint(run_dir: Path, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The latest usable checkpoint's state; None when there is none (or none usable: logged)."""
    log = log or (lambda line: rundir.append_log(run_dir, line))
    manifest = read_manifest(run_dir)
    if manifest is None and (run_dir / rundir.CHECKPOINT_MANIFEST).is_file():
        log(f"warning: {rundir.CHECKPOINT_MANIFEST} holds no usable record: checking the checkpoints by loading them")
    problems: list[str] = []
    for name in (rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS):
        path = run_dir / name
        if not path.is_file():
            continue
        problem = checkpoint_problem(path, manifest)
        if problem is None:
            try:
                state = _load_file(path)
            except Exception as err:  # any failure to unpickle means the file is unusable, whatever torch raised
                lines = str(err).strip().splitlines()
                problem = f"cannot be read ({type(err).__name__}: {lines[0] if lines else ''})"
        if problem is None:
            if problems:
                log(f"warning: {'; '.join(problems)}; resuming from {name} instead")
            return state
        problems.append(f"{name} {problem}")
    if problems:
        log(f"warning: no usable checkpoint ({'; '.join(problems)}): restarting this run from scratch")
    return None


def save_weights(run_dir: Path, model: torch.nn.Module) -> None:
    """model.pt: the trained model's state_dict (written before DONE when train.keep is `weights`)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    rundir.atomic_write_bytes(run_dir / rundir.WEIGHTS, buffer.getvalue())


def restore_checkpoint(checkpoint: dict[str, Any], trainer: Trainer, sampler: samplers.BatchSampler) -> None:
    """The inverse of `save_checkpoint`: model, loss, optimizer, scheduler, scaler, sampler and RNG state."""
    trainer.model.load_state_dict(checkpoint["model"])
    trainer.loss_fn.load_state_dict(checkpoint["loss"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    if trainer.scheduler is not None and checkpoint["scheduler"] is not None:
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
    if trainer.scaler is not None and checkpoint["scaler"] is not None:
        trainer.scaler.load_state_dict(checkpoint["scaler"])
    sampler.load_state_dict(checkpoint["sampler"])
    restore_rng(checkpoint["rng"])


def restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])

