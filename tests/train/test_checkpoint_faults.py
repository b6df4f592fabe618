"""Checkpoints that survive storage faults: truncated or bit-flipped latest falls back to the previous
(warning in run.log), both bad restart from scratch, ENOSPC mid-write keeps the previous, a write
interrupted between its renames still resumes, retention after DONE."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch

from dmlbench import rundir
from dmlbench.rundir.tidy import prune_after_done
from dmlbench.train import checkpoint
from dmlbench.train.checkpoint import CheckpointWriteError, load_checkpoint, write_verified


def state(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": {"w": torch.full((256,), float(epoch))},
        "loss": {},
        "optimizer": {},
        "scheduler": None,
        "sampler": {},
        "rng": {},
    }


def save(run_dir: Path, epoch: int) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(state(epoch), buffer)
    write_verified(run_dir, buffer.getvalue())


def loaded_epoch(run_dir: Path) -> int | None:
    got = load_checkpoint(run_dir)
    return None if got is None else got["epoch"]


def log_text(run_dir: Path) -> str:
    path = run_dir / rundir.LOG
    return path.read_text() if path.is_file() else ""


def test_two_epochs_keep_latest_and_previous_with_checksums(tmp_path: Path) -> None:
    save(tmp_path, 1)
    save(tmp_path, 2)
    manifest = checkpoint.read_manifest(tmp_path)
    assert manifest is not None and set(manifest) == {rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS}
    for name, entry in manifest.items():
        assert checkpoint.file_digest(tmp_path / name) == entry
    assert loaded_epoch(tmp_path) == 2 and log_text(tmp_path) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("fault", ["truncated", "bit-flipped", "emptied", "deleted"])
def test_a_bad_latest_falls_back_to_the_previous_with_a_warning(tmp_path: Path, fault: str) -> None:
    save(tmp_path, 1)
    save(tmp_path, 2)
    latest = tmp_path / rundir.CHECKPOINT
    data = latest.read_bytes()
    if fault == "truncated":
        latest.write_bytes(data[: len(data) // 2])
    elif fault == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) - 300] ^= 0x10  # inside the tensor bytes: torch.load alone would not notice
        latest.write_bytes(bytes(flipped))
    elif fault == "emptied":
        latest.write_bytes(b"")
    else:
        latest.unlink()
    assert loaded_epoch(tmp_path) == 1
    log = log_text(tmp_path)
    if fault == "deleted":
        assert log == ""  # a write interrupted between its renames: nothing is wrong with what is there
    else:
        assert "warning: checkpoint.pt " in log and "resuming from checkpoint.prev.pt instead" in log, log
        assert {"truncated": "truncated or cut short", "bit-flipped": "corrupted", "emptied": "is 0 bytes"}[fault] in log


def test_both_bad_restart_from_scratch_with_a_message(tmp_path: Path) -> None:
    save(tmp_path, 1)
    save(tmp_path, 2)
    for name in (rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS):
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[:100])
    assert loaded_epoch(tmp_path) is None
    log = log_text(tmp_path)
    assert "no usable checkpoint (checkpoint.pt is 100 bytes" in log and "restarting this run from scratch" in log


def test_a_checkpoint_without_recorded_checksums_is_tried_by_loading(tmp_path: Path) -> None:
    """Runs checkpointed before checksums existed still resume; a corrupt one of them restarts cleanly."""
    save(tmp_path, 3)
    (tmp_path / rundir.CHECKPOINT_MANIFEST).unlink()
    assert loaded_epoch(tmp_path) == 3
    (tmp_path / rundir.CHECKPOINT).write_bytes(b"PK\x03\x04 not a zip archive")
    assert loaded_epoch(tmp_path) is None
    assert "cannot be read (RuntimeError: PytorchStreamReader failed" in log_text(tmp_path)


def test_enospc_during_a_write_leaves_the_previous_checkpoint_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(path: Path, data: bytes) -> None:
        path.write_bytes(data[: len(data) // 3])  # the disk fills a third of the way in
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_file", disk_full)
    with pytest.raises(CheckpointWriteError, match="No space left on device. The previous checkpoint is kept"):
        save(tmp_path, 2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left behind
    monkeypatch.undo()
    assert loaded_epoch(tmp_path) == 1


def test_a_write_that_reads_back_wrong_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path, 1)

    def lossy(path: Path, data: bytes) -> None:  # a filesystem that silently drops the tail
        path.write_bytes(data[:-10])

    monkeypatch.setattr(checkpoint, "_write_file", lossy)
    with pytest.raises(CheckpointWriteError, match="read back as"):
        save(tmp_path, 2)
    monkeypatch.undo()
    assert loaded_epoch(tmp_path) == 1


@pytest.mark.parametrize(
    ("keep", "left"),
    [("full", ["checkpoint.json", "checkpoint.pt"]), ("weights", []), ("none", [])],
)
def test_retention_after_done(tmp_path: Path, keep: str, left: list[str]) -> None:
    save(tmp_path, 1)
    save(tmp_path, 2)
    prune_after_done(tmp_path, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == left
