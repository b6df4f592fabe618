"""The run's checkpoint: model, loss, optimizer, scheduler, scaler, sampler and RNG state in one file.

Written atomically after every epoch (and every `train.checkpoint_every_batches` steps), so a killed or
preempted run resumes from it and reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmlbench import rundir, samplers
from dmlbench.train.trainer import Trainer


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
    rundir.atomic_write_bytes(run_dir / rundir.CHECKPOINT, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / rundir.CHECKPOINT
    if not path.is_file():
        return None
    # Our own file (written atomically by save_checkpoint); it holds RNG states, hence weights_only=False.
    return torch.load(path, map_location="cpu", weights_only=False)


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

