"""One run: config -> (dataset, sampler, model, loss) -> train -> per-layer features -> metrics -> run folder.

`train_run` trains with a checkpoint after every epoch (and every `train.checkpoint_every_batches`
steps) and resumes from it automatically, so a killed or preempted run continues where it stopped and
reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dmlbench import losses, rundir
from dmlbench.config import Config, ConfigError, config_from_dict, dump_config, read_yaml_file, run_id
from dmlbench.data.dataset import ImageDataset
from dmlbench.errors import DmlbenchError
from dmlbench.evaluate.hits import query_hits, save_query_hits
from dmlbench.plugins import check_same_code, record_code
from dmlbench.progress import progress_bar
from dmlbench.registry import import_plugins
from dmlbench.rundir.lease import Lease
from dmlbench.rundir.tidy import prune_after_done, remove_temp_files, tidy_done
from dmlbench.track import Tracking, open_tracking
from dmlbench.train import distributed
from dmlbench.train.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint, save_weights
from dmlbench.train.environment import dataset_facts, fingerprint, write_environment
from dmlbench.train.features import evaluate_positions, save_embedding_sample
from dmlbench.train.parts import RunParts, prepare
from dmlbench.train.pipeline import LoadedBatch, batch_tensors, image_transform, run_schedule, training_loader
from dmlbench.train.trainer import Trainer, build_trainer
from dmlbench.validation.preflight import preflight


@dataclass
class EpochProgress:
    """The losses, per-step stats and time of the epoch in progress (saved in mid-epoch checkpoints)."""

    losses: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"losses": self.losses, "stats": self.stats, "time_s": self.time_s}


@dataclass
class ResumePoint:
    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps of `epoch` (a mid-epoch checkpoint), else 0
    progress: EpochProgress | None = None  # that partial epoch's progress


def write_config(run_dir: Path, cfg: Config) -> None:
    """Write config.yaml, or check that an existing one describes the same run."""
    path = run_dir / rundir.CONFIG
    if path.is_file():
        existing = config_from_dict(read_yaml_file(path))
        if run_id(existing) != run_id(cfg):
            raise ConfigError(
                f"{run_dir} already holds a different run (run_id {run_id(existing)} != {run_id(cfg)}); "
                "choose another output_dir or remove that folder"
            )
        return
    rundir.atomic_write_text(path, dump_config(cfg))


def resume(
    run_dir: Path, trainer: Trainer, parts: RunParts, log: Callable[[str], None], *, writes: bool = True
) -> tuple[ResumePoint, list[dict[str, Any]]]:
    """Restore the folder's checkpoint, if any; returns where training continues and the history kept
    (rewritten in the folder when `writes`: by one process of a data-parallel run)."""
    point = ResumePoint()
    checkpoint = load_checkpoint(run_dir, log)
    if checkpoint is not None:
        restore_checkpoint(checkpoint, trainer, parts.sampler)
        point = ResumePoint(int(checkpoint["epoch"]), int(checkpoint.get("step", 0)))
        if point.step:
            point.progress = EpochProgress(**checkpoint["epoch_progress"])
        log(f"resuming {run_dir.name} after epoch {point.epoch}" + (f", step {point.step}" if point.step else ""))
    # Epochs after the checkpoint were lost with the killed process: drop their history rows.
    history = [row for row in rundir.read_history(run_dir) if row.get("epoch", 0) <= point.epoch]
    if writes:
        rundir.write_history(run_dir, history)
    return point, history


def mean_stats(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of the steps' loss stats, skipping missing and non-finite values."""
    keys = {k for r in rows for k in r}
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in rows if k in r and r[k] is not None and math.isfinite(r[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


@dataclass
class EpochRunner:
    """Trains the epochs of one run from one loader; `run_epoch` returns the epoch's history row."""

    run_dir: Path
    parts: RunParts
    trainer: Trainer
    loader: Iterator[LoadedBatch]
    progress: bool
    labels_all: torch.Tensor
    attributes: torch.Tensor | None
    world: distributed.World = field(default_factory=distributed.World)  # only its main process writes
    lease: Lease | None = None  # the folder's lease (main process): the run stops once it is lost

    def confirm_lease(self) -> None:
        """Before a write: every process stops when the main one's lease is no longer its own."""
        self.world.on_main(self.lease.confirm if self.lease is not None else lambda: None)

    def run_epoch(self, epoch: int, first_step: int, partial: EpochProgress) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train steps `first_step`.. of `epoch`; returns its history row and the sampler state after its last batch."""
        cfg, sampler = self.parts.cfg, self.parts.sampler
        if first_step == 0:
            # Whatever else draws from the global RNG (none of our losses do) replays from (seed, epoch);
            # a resumed partial epoch continues from the RNG state saved in its checkpoint instead.
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        num_batches = len(sampler)
        every_batches = cfg.train.checkpoint_every_batches or 0
        self.trainer.model.train()
        started = time.time() - partial.time_s
        bar = progress_bar(
            total=num_batches, initial=first_step, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not self.progress, leave=False
        )
        loaded: LoadedBatch | None = None
        for step in range(first_step, num_batches):
            loaded = next(self.loader)
            if (loaded.epoch, loaded.step) != (epoch, step):  # cannot happen: one schedule feeds both
                raise RuntimeError(f"loaded batch {(loaded.epoch, loaded.step)} where step {(epoch, step)} was due")
            if self.lease is not None and not self.world.distributed:
                self.lease.check()  # a lost lease (taken over, heartbeat unwritable) stops at the next step
            loss, grad_norm = self.trainer.step(
                *batch_tensors(loaded, self.labels_all, self.attributes, self.parts.device),
                where=f"epoch {epoch + 1}, step {step + 1}",
            )
            partial.losses.append(loss)
            partial.stats.append({**self.trainer.loss_fn.last_stats, "grad_norm": grad_norm})
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(partial.losses):.4f}")
            if every_batches and (step + 1) % every_batches == 0 and step + 1 < num_batches:
                partial.time_s = time.time() - started
                self.confirm_lease()
                self.save_mid_epoch(loaded, partial)
        bar.close()
        if self.trainer.scheduler is not None:
            self.trainer.scheduler.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(np.mean(partial.losses)) if partial.losses else None,
            "lr": self.trainer.optimizer.param_groups[0]["lr"],
            "time_s": round(time.time() - started, 3),
            "batches": num_batches,
            "stats": mean_stats(partial.stats),
            "sampler": sampler.epoch_stats(epoch),
        }
        assert loaded is not None  # an epoch has a batch, and a resume starts before the epoch's end
        return row, loaded.sampler_state

    def save_mid_epoch(self, loaded: LoadedBatch, partial: EpochProgress) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(
            self.run_dir,
            self.trainer,
            loaded.sampler_state,
            epoch=loaded.epoch,
            step=loaded.step + 1,
            epoch_progress=partial.as_dict(),
        )

    def validate(self, epoch: int) -> dict[str, float] | None:
        """Validation metrics (leave-one-out on the val classes) when this epoch is due for them."""
        cfg, parts = self.parts.cfg, self.parts
        every = cfg.eval.every_epochs
        if not self.world.is_main:  # evaluated once, by the process that writes the history
            return None
        if not (every and len(parts.val_positions) and ((epoch + 1) % every == 0 or epoch + 1 == cfg.train.epochs)):
            return None
        val_metrics, _ = evaluate_positions(self.trainer.model, parts, parts.val_positions, self.progress, "validation", "leave-one-out")
        return val_metrics.get("emb", next(iter(val_metrics.values())))


def final_evaluation(
    run_dir: Path,
    parts: RunParts,
    trainer: Trainer,
    progress: bool,
    before_done: Callable[[dict[str, Any]], None] | None = None,
    lease: Lease | None = None,
) -> dict[str, Any]:
    """Test metrics of every layer, the embedding sample, metrics.json and DONE; returns metrics.json's dict.

    `before_done(result)` runs after metrics.json is written and before DONE (nothing writes after DONE).
    `lease`: confirmed before the results are written (a trainer whose lease is lost writes none)."""
    cfg = parts.cfg
    metrics, feats = evaluate_positions(trainer.model, parts, parts.eval_positions, progress, "test features")
    result = {
        "run_id": run_id(cfg),
        "dataset": parts.index.name,
        "protocol": parts.index.protocol,
        "epoch": cfg.train.epochs,
        "ks": list(cfg.eval.ks or parts.index.ks),
        "notes": parts.notes,
        "layers": metrics,
    }
    if lease is not None:
        lease.confirm()
    save_embedding_sample(run_dir, parts, feats, parts.eval_positions)
    positions = parts.eval_positions
    index = parts.index
    galleries = None if index.galleries is None else index.galleries[positions]
    hits = query_hits(feats, index.labels[positions], index.splits[positions], index.protocol, positions,
                      cfg.eval.backend, galleries=galleries)  # fmt: skip
    save_query_hits(run_dir, hits)
    rundir.atomic_write_json(run_dir / rundir.METRICS, result)
    if cfg.train.keep == "weights":
        save_weights(run_dir, trainer.model)
    if before_done is not None:
        before_done(result)
    if lease is not None:
        lease.confirm()
    rundir.mark_done(run_dir, {"run_id": result["run_id"]})
    prune_after_done(run_dir, cfg.train.keep)
    return result


def log_removed_temp_files(run_dir: Path, removed: dict[str, int]) -> None:
    if removed:
        size = sum(removed.values()) / 1e6
        rundir.append_log(run_dir, f"removed {len(removed)} temporary file(s) of interrupted writes ({size:.1f} MB): {', '.join(sorted(removed))}")


def train_run(cfg: Config, run_dir: Path | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one run into `run_dir` (default `<output_dir>/<run_id>`); return metrics.json's dict.

    A finished folder (DONE) is returned as is and never written to. A folder with a checkpoint resumes
    after its last completed epoch (or mid-epoch step). With `train.distributed`, every process the
    launcher started calls this; process 0 writes the folder and evaluates, the others return
    `{"run_id": ..., "rank": ...}` once training is over.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.output_dir) / run_id(cfg)
    if rundir.is_done(run_dir):
        import_plugins(cfg.plugins)
        check_same_code(run_dir, cfg)  # a finished run of other plugin code is not this run's result
        tidy_done(run_dir)  # pruning a trainer killed after DONE never got to
        return rundir.read_json(run_dir / rundir.METRICS)
    # Typos, missing weights or a missing compiler fail before the run folder even exists.
    device = preflight(cfg)
    if cfg.train.tier == "head":  # the fast tier: frozen backbone, cached features, head only (one process)
        if cfg.train.distributed:
            raise ConfigError("train.tier=head runs in one process; set train.distributed=false")
        run_dir.mkdir(parents=True, exist_ok=True)
        with Lease(run_dir, log=lambda line: rundir.append_log(run_dir, line)) as lease:
            if rundir.is_done(run_dir):  # finished by the lease's previous holder while we started
                return rundir.read_json(run_dir / rundir.METRICS)
            write_config(run_dir, cfg)
            record_code(run_dir, cfg)
            log_removed_temp_files(run_dir, remove_temp_files(run_dir))
            from dmlbench.train.head_tier import train_head_run

            return train_head_run(cfg, run_dir, device, progress=progress, lease=lease)
    world = distributed.world_for(cfg.train.distributed)
    device = distributed.join(world, device)
    created = next((p for p in [*reversed(run_dir.parents), run_dir] if not p.exists()), None)
    try:
        with contextlib.ExitStack() as held:
            return _train_and_evaluate(cfg, run_dir, device, world, held, progress and world.is_main)
    except DmlbenchError:
        if created is not None and world.is_main:
            remove_unstarted(run_dir, created)  # e.g. a sampler parameter the data cannot satisfy: no empty folder
        raise
    finally:
        if world.distributed:
            distributed.leave()


def remove_unstarted(run_dir: Path, created: Path) -> None:
    """Remove a run folder this command created (and its parents up to `created`, when empty) after it
    stopped before training wrote anything of worth: only the files a start writes are there."""
    startup = {rundir.CONFIG, rundir.CODE, rundir.LOG, rundir.TRACKER}
    with contextlib.suppress(OSError):
        names = {p.name for p in run_dir.iterdir()}
        if not names <= startup:
            return
        for name in names:
            (run_dir / name).unlink()
        folder = run_dir
        while True:
            folder.rmdir()  # OSError once a folder is not empty: stops there
            if folder == created:
                return
            folder = folder.parent


def _train_and_evaluate(
    cfg: Config, run_dir: Path, device: torch.device, world: distributed.World, held: contextlib.ExitStack, progress: bool
) -> dict[str, Any]:
    """`train_run` in each process; process 0 holds the folder's lease (released by `held`) and writes."""
    leases: list[Lease] = []

    def start_folder() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        leases.append(held.enter_context(Lease(run_dir, log=lambda line: rundir.append_log(run_dir, line))))
        if not rundir.is_done(run_dir):
            write_config(run_dir, cfg)
            record_code(run_dir, cfg)
            log_removed_temp_files(run_dir, remove_temp_files(run_dir))  # of writes killed in an earlier attempt

    world.on_main(start_folder)  # a data-parallel run: process 0 writes the folder, all stop if it cannot
    if rundir.is_done(run_dir):  # finished by the lease's previous holder while we started
        return rundir.read_json(run_dir / rundir.METRICS)
    lease = leases[0] if leases else None

    def log(line: str) -> None:
        if world.is_main:
            rundir.append_log(run_dir, line)
        if progress:
            tqdm.write(line)

    parts = prepare(cfg, log=log, device=device)
    if world.is_main:
        write_environment(run_dir, fingerprint(device), dataset_facts(parts.index))
    distributed.check_loss(losses.LOSSES.get(cfg.loss.name), cfg.loss.name, world)
    for note in parts.notes:
        log(f"note: {note}")
    trainer = build_trainer(parts)
    start, history = resume(run_dir, trainer, parts, log, writes=world.is_main)
    if world.distributed:
        trainer.parallel = distributed.wrap_model(trainer.model, world, device, list(trainer.loss_fn.parameters()))
        bn_note = distributed.bn_note(trainer.model, device)
        log(f"data-parallel: {world.size} processes" + (f"; note: {bn_note}" if bn_note else ""))
    # optional trackers mirror the run (process 0 only); they never stop it
    tracking = open_tracking(cfg, run_dir, history) if world.is_main else Tracking(run_dir, [])

    train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
    schedule = run_schedule(parts.sampler, cfg.train.epochs, start.epoch, start.step)
    shard = (world.rank, world.size) if world.distributed else None
    runner = EpochRunner(
        run_dir,
        parts,
        trainer,
        iter(training_loader(cfg, train_set, schedule, device, shard)),
        progress,
        labels_all=torch.from_numpy(parts.loss_labels),
        attributes=None if parts.index.attributes is None else torch.from_numpy(parts.index.attributes.astype(np.float32)),
        world=world,
        lease=lease,
    )
    for epoch in range(start.epoch, cfg.train.epochs):
        resumed = epoch == start.epoch and start.step > 0
        first_step = start.step if resumed else 0
        partial = start.progress if resumed and start.progress is not None else EpochProgress()
        row, sampler_state = runner.run_epoch(epoch, first_step, partial)
        val = runner.validate(epoch)
        if val is not None:
            row["val"] = val
        history.append(row)
        runner.confirm_lease()  # lost (taken over while we stalled, heartbeat unwritable): the holder writes, not us
        if world.is_main:
            # History first: a kill between the two writes leaves an extra row that resume drops.
            rundir.write_history(run_dir, history)
            # Trackers before the checkpoint: once it exists they hold this epoch, so a resume from it
            # never logs the epoch twice (a kill before it re-trains the epoch, which they skip).
            tracking.log_epoch(row)
            save_checkpoint(run_dir, trainer, sampler_state, epoch=epoch + 1)
        log(f"epoch {epoch + 1}/{cfg.train.epochs} loss {row['loss']:.4f} ({row['time_s']:.1f} s)")

    del runner  # shuts the loader's worker processes down before evaluation starts its own
    if not world.is_main:
        return {"run_id": run_id(cfg), "rank": world.rank}
    result = final_evaluation(run_dir, parts, trainer, progress, before_done=tracking.finish, lease=lease)
    log(f"done: {run_dir}")
    return result
