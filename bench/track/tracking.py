"""Mirroring one run to its trackers: `open_tracking` opens (or, on resume, reopens) the configured trackers
for a run folder, and `Tracking` logs epochs and the final result to each, turning a tracker's first error
into one warning."""

from __future__ import annotations

import atexit
import random
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmlbench import rundir
from dmlbench.config import Config, config_to_dict, run_id
from dmlbench.config.keys import normalise_key, short_key
from dmlbench.track.backends import TRACKER_CLASSES
from dmlbench.track.base import (
    RunInfo,
    Tracker,
    TrackerUnavailable,
    epoch_scalars,
    final_scalars,
    flat_params,
)


def run_info(cfg: Config, run_dir: Path) -> RunInfo:
    """Name, tags and parameters of a run's tracker runs (sweep and grid from cell.json when it is a cell)."""
    cell: dict[str, Any] = {}
    if (run_dir / rundir.CELL).is_file():
        cell = rundir.read_json(run_dir / rundir.CELL)
    rid = run_id(cfg)
    grid = dict(cell.get("grid") or {})
    return RunInfo(
        run_id=rid,
        name=cell_name(cfg, grid) if cell else cfg.name or rid,
        project=cfg.track.project,
        sweep=cell.get("sweep"),
        grid=grid,
        params={"run_id": rid, **flat_params(config_to_dict(cfg))},
    )


def cell_name(cfg: Config, grid: dict[str, Any]) -> str:
    """A sweep cell's tracker run name: its loss, sampler and seed, then its other grid values (the sweep is
    the MLflow experiment / W&B group, so every run of it would otherwise carry the same name).

    >>> from dmlbench.config import Config
    >>> cfg = Config(); cfg.loss.name = "circle"; cfg.seed = 3
    >>> cell_name(cfg, {"loss.name": "circle", "seed": 3, "loss.params.m": 0.25})
    'circle batch-wise seed=3 m=0.25'
    """
    shown = {normalise_key(k) for k in ("loss", "sampler", "seed")}
    rest = [f"{short_key(normalise_key(k))}={v}" for k, v in grid.items() if normalise_key(k) not in shown]
    return " ".join([cfg.loss.name, cfg.sampler.name, f"seed={cfg.seed}", *rest])


class Tracking:
    """The trackers of one run. Every call is guarded: the first error of a tracker is one warning and
    that tracker is dropped; the others and the run go on."""

    def __init__(self, run_dir: Path, trackers: list[Tracker]) -> None:
        self.run_dir = run_dir
        self.trackers = trackers
        self.closed = False
        self.state: dict[str, dict[str, Any]] = {}
        path = run_dir / rundir.TRACKER
        if trackers and path.is_file():  # no tracker configured: the file is never read
            try:
                state = rundir.read_json(path, dict)
                if not all(isinstance(v, dict) for v in state.values()):
                    raise ValueError(f"{path} must map each tracker to its run")
                self.state = state
            except ValueError as err:  # trackers never stop a run: new tracker runs are started instead
                line = f"warning: {err}; new tracker runs are started and the file is rewritten"
                rundir.append_log(self.run_dir, line)
                print(f"dmlbench: {line}", file=sys.stderr, flush=True)

    def warn(self, tracker: str, err: BaseException) -> None:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        line = f"warning: {tracker} tracker disabled: {detail}; training goes on, the run folder is complete"
        rundir.append_log(self.run_dir, line)
        print(f"dmlbench: {line}", file=sys.stderr, flush=True)

    def _each(self, action: str, call: Any) -> None:
        if not self.trackers:  # no tracker configured: nothing runs at all
            return
        with rng_preserved():
            self._each_unguarded(action, call)

    def _each_unguarded(self, action: str, call: Any) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as err:  # a tracker must never stop the run, whatever it raises
                self.trackers.remove(tracker)
                self.warn(tracker.name, TrackerUnavailable(f"{action} failed: {type(err).__name__}: {err}")
                          if not isinstance(err, TrackerUnavailable) else err)

    def _save_state(self) -> None:
        rundir.atomic_write_json(self.run_dir / rundir.TRACKER, self.state)

    def start(self, info: RunInfo, history: list[dict[str, Any]]) -> None:
        """Open (or reopen) each tracker run and log the epochs of `history` it has not logged yet."""

        def start_one(tracker: Tracker) -> None:
            where = tracker.where()
            entry = self.state.get(tracker.name)
            resume_id = entry["id"] if entry and entry.get("where") == where else None
            try:
                new_id = tracker.start(info, resume_id)
            except TrackerUnavailable:
                raise
            except Exception:
                if resume_id is None:
                    raise
                resume_id = None  # the stored run is gone (deleted, another server): start a new one
                new_id = tracker.start(info, None)
            if resume_id is None or entry is None:
                entry = {"id": new_id, "where": where, "epochs_logged": 0}
            self.state[tracker.name] = entry
            self._save_state()

        self._each("start", start_one)
        for row in history:
            self.log_epoch(row)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One history row, to each tracker that has not logged that epoch yet."""
        epoch = int(row["epoch"])
        scalars = epoch_scalars(row)

        def log_one(tracker: Tracker) -> None:
            entry = self.state[tracker.name]
            if epoch > entry["epochs_logged"]:
                tracker.log_scalars(scalars, epoch)
                entry["epochs_logged"] = epoch

        self._each("logging", log_one)
        if self.trackers:
            self._save_state()

    def finish(self, metrics: dict[str, Any]) -> None:
        """Final metrics and the run's files, then close every tracker run as finished."""
        if self.trackers:
            scalars = final_scalars(metrics)
            step = int(metrics.get("epoch") or 0)
            with tempfile.TemporaryDirectory(prefix="dmlbench-track-") as tmp:
                artifacts = self._artifacts(metrics, Path(tmp))
                self._each("final logging", lambda t: t.log_final(scalars, step, artifacts))
        self.close(ok=True)

    def _artifacts(self, metrics: dict[str, Any], tmp: Path) -> list[Path]:
        """The run folder's config, history and metrics, a metrics table and the training-curve plot."""
        files = [self.run_dir / name for name in (rundir.CONFIG, rundir.HISTORY, rundir.METRICS)]
        files = [path for path in files if path.is_file()]
        table = tmp / "metrics.md"
        table.write_text(metrics_table(metrics) + "\n")
        files.append(table)
        try:
            from dmlbench.results.collect import collect_history
            from dmlbench.results.plots import plot_training_curves

            files += [p for p in plot_training_curves(collect_history([self.run_dir]), tmp / "training_curves") if p.suffix == ".png"]
        except Exception as err:  # a plot is a nicety; the numbers are logged anyway
            rundir.append_log(self.run_dir, f"note: no training-curve plot for the trackers: {err}")
        return files

    def close(self, ok: bool) -> None:
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        self._each("closing", lambda t: t.close(ok))


@contextmanager
def rng_preserved() -> Iterator[None]:
    """Tracker packages may draw from the global RNGs (ids, sampling); training must not notice."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def metrics_table(metrics: dict[str, Any]) -> str:
    """A Markdown table of a run's test metrics: one row per layer."""
    layers = metrics.get("layers") or {}
    keys = sorted({k for values in layers.values() for k, v in values.items() if isinstance(v, float)})
    lines = ["| layer | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for layer, values in layers.items():
        cells = [f"{100 * values[k]:.2f}" if isinstance(values.get(k), float) else "" for k in keys]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def open_tracking(cfg: Config, run_dir: Path, history: list[dict[str, Any]]) -> Tracking:
    """The run's trackers, started (or resumed) and caught up with `history`; no trackers: a no-op object.

    A run that stops with an error leaves its tracker runs marked failed when the process exits.
    """
    trackers = [TRACKER_CLASSES[name](cfg.track, run_dir) for name in dict.fromkeys(cfg.track.trackers)]
    tracking = Tracking(run_dir, trackers)
    if trackers:
        tracking.start(run_info(cfg, run_dir), history)
        atexit.register(tracking.close, False)
    return tracking
