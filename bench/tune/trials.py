"""Trials as work: a trial's fold cells, the job that runs them, their submission through the sweep
executors (inline / local / SLURM job arrays) and the check that a trial has ended and what it scored.

Trial cells are ordinary sweep cells in `<tune>/trials/runs/<run_id>/`, so a preempted SLURM job
requeues itself and its cells resume from their checkpoints like any sweep cell. Every cell is checked
to evaluate on its validation fold (`eval.split=val`) before it is submitted: tuning never opens a test,
query or gallery image.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from submitit.helpers import Checkpointable, DelayedSubmission

from dmlbench import rundir
from dmlbench.config import config_to_dict, run_id
from dmlbench.sweep.executor import make_executor, record_jobs, write_cell_files
from dmlbench.sweep.expand import Cell
from dmlbench.sweep.job import DEFAULT_RUNNER, exception_summary, route_preemption_to_submitit, run_cell
from dmlbench.sweep.spec import Sweep
from dmlbench.sweep.status import cell_statuses

if TYPE_CHECKING:  # not imported at run time: a job process unpickling TrialJob stays light (no Optuna)
    from dmlbench.tune.spec import Method, TuneSpec

TRIALS_DIR = "trials"
CELL_LOCK = ".cell.lock"
ENDED = frozenset({"done", "failed", "cancelled", "interrupted"})
CellArgs = tuple[dict[str, Any], str]  # (config mapping, run folder) of one cell


class TestSplitGuardError(RuntimeError):
    """A tuning cell would evaluate on the test split: a bug in dmlbench, never a user error."""


def trials_sweep(spec: TuneSpec) -> Sweep:
    """The sweep object the trial cells are submitted through (its folder: `<tune>/trials/`)."""
    return Sweep(name=f"{spec.name}-trials", output_dir=spec.output_dir / TRIALS_DIR, base=spec.base, grid={}, executor=spec.executor)


def trial_cells(spec: TuneSpec, sweep: Sweep, method: Method, number: int, params: dict[str, Any]) -> list[Cell]:
    """One cell per validation fold; a cell's run_id depends on the params and the fold only."""
    cells = []
    for fold in range(spec.folds):
        cfg = spec.trial_config(method, params, fold)
        cfg.output_dir = str(sweep.runs_dir.resolve())
        grid = {"method": method.name, "trial": number, "data.fold": fold, **params}
        cells.append(Cell(grid=grid, config=cfg, run_id=run_id(cfg)))
    guard_validation_only(cells)
    return cells


def guard_validation_only(cells: Sequence[Cell]) -> None:
    """The in-code guarantee behind "the test split is never loaded while tuning"."""
    for cell in cells:
        if cell.config.eval.split != "val" or cell.config.data.folds < 2:
            raise TestSplitGuardError(f"tuning cell {cell.run_id} is not a validation-fold run (eval.split={cell.config.eval.split})")


@contextlib.contextmanager
def cell_lock(run_dir: Path) -> Iterator[None]:
    """One process per run folder: a local job left running by a killed `tune` finishes its cell while
    the re-run's job for the same cell waits, then finds it done."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CELL_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class TrialJob(Checkpointable):
    """Several cells (a trial's folds, or one fold) run one after the other in one job: short runs pay
    the job's start-up (Python, torch import) once. All state is in the run folders, so a requeued job
    skips finished cells and resumes the interrupted one from its checkpoint."""

    def __init__(self, runner: str = DEFAULT_RUNNER) -> None:
        self.runner = runner

    def __call__(self, cells: list[CellArgs]) -> list[dict[str, Any]]:
        route_preemption_to_submitit()
        results = []
        for config, run_dir in cells:
            with cell_lock(Path(run_dir)):
                results.append(run_cell(config, run_dir, self.runner))
        return results

    def checkpoint(self, cells: list[CellArgs]) -> DelayedSubmission:
        with contextlib.suppress(OSError):
            for _config, run_dir in cells:
                if not rundir.is_done(Path(run_dir)):
                    rundir.append_log(Path(run_dir), "tune: preempted or out of time; requeueing (resumes from the last checkpoint)")
        return DelayedSubmission(self, cells)


@dataclass
class TrialWork:
    """A trial in flight: its cells and (local executor) the jobs running them."""

    method: Method
    number: int
    cells: list[Cell]
    jobs: list[Any] = field(default_factory=list)


def _job_groups(spec: TuneSpec, sweep: Sweep, cells: Sequence[Cell], skip: set[str]) -> list[list[Cell]]:
    todo = [c for c in cells if c.run_id not in skip and not rundir.is_done(sweep.runs_dir / c.run_id)]
    return [todo] if spec.job == "trial" and todo else [[c] for c in todo]


def _args(sweep: Sweep, group: Sequence[Cell]) -> list[CellArgs]:
    return [(config_to_dict(c.config), str((sweep.runs_dir / c.run_id).resolve())) for c in group]


def submit(spec: TuneSpec, sweep: Sweep, works: Sequence[TrialWork], runner: str, log: Callable[[str], None]) -> None:
    """Start the unfinished cells of `works`: inline (now, in this process), local jobs, or one SLURM array."""
    for work in works:
        guard_validation_only(work.cells)
        write_cell_files(sweep, work.cells)
    kind = spec.executor.kind
    if kind == "inline":
        for work in works:
            for cell in work.cells:
                try:
                    run_cell(config_to_dict(cell.config), sweep.runs_dir / cell.run_id, runner)
                except Exception as err:  # recorded in the cell's error.txt by run_cell
                    log(f"FAILED {cell.run_id} ({work.method.name} trial {work.number}): {exception_summary(err)}")
                    break  # the trial has failed: its other folds would not change that
        return
    skip: set[str] = set()
    if kind == "slurm":  # a resumed trial's cells may still be queued or running: never submit them twice
        all_cells = [c for work in works for c in work.cells]
        skip = {s.run_id for s in cell_statuses(sweep, all_cells) if s.state in ("done", "running", "pending")}
    groups = [(work, group) for work in works for group in _job_groups(spec, sweep, work.cells, skip)]
    if not groups:
        return
    executor = make_executor(sweep, kind)
    if kind == "local":
        for work, group in groups:
            job = executor.submit(TrialJob(runner), _args(sweep, group))
            work.jobs.append(job)
            record_jobs(sweep.output_dir, {c.run_id: f"local:{job.job_id}" for c in group})
        return
    jobs = executor.map_array(TrialJob(runner), [_args(sweep, group) for _work, group in groups])
    record_jobs(sweep.output_dir, {c.run_id: str(job.job_id) for (_w, group), job in zip(groups, jobs, strict=True) for c in group})


def ended(spec: TuneSpec, sweep: Sweep, works: Sequence[TrialWork]) -> list[TrialWork]:
    """The trials of `works` whose cells have all stopped (finished, failed, cancelled, vanished)."""
    if spec.executor.kind == "inline":
        return list(works)
    if spec.executor.kind == "local":
        # no jobs: nothing was left to run (a resumed trial whose cells were all done)
        return [w for w in works if all(job.done() for job in w.jobs)]
    cells = [c for work in works for c in work.cells]
    states = {s.run_id: s.state for s in cell_statuses(sweep, cells)}
    return [w for w in works if all(states[c.run_id] in ENDED for c in w.cells)]


def fold_value(run_dir: Path, metric: str, layer: str) -> float | None:
    """The objective of one finished fold (None when the run is not done or lacks the metric)."""
    if not rundir.is_done(run_dir):
        return None
    try:
        value = rundir.read_json(run_dir / rundir.METRICS)["layers"][layer][metric]
    except (KeyError, ValueError, OSError):
        return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def trial_value(spec: TuneSpec, sweep: Sweep, work: TrialWork) -> float | None:
    """The mean of the objective over the trial's folds; None when any fold did not finish."""
    values = [fold_value(sweep.runs_dir / c.run_id, spec.metric, spec.layer) for c in work.cells]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]
