"""Submitting a sweep: its unfinished cells as SLURM job arrays, local subprocesses or an in-process
loop, under a lock on the output folder, with jobs.json recording each cell's job; and cancelling."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dmlbench import rundir
from dmlbench.config import config_to_dict
from dmlbench.errors import SchedulerError
from dmlbench.sweep.executor import make_executor, record_jobs, write_cell_files
from dmlbench.sweep.expand import Cell, describe_cell, expand
from dmlbench.sweep.job import DEFAULT_RUNNER, CellJob, exception_summary, run_cell
from dmlbench.sweep.reuse import ChangedCell, changed_code_cells, refuse_or_set_aside
from dmlbench.sweep.slurm import run_slurm_command, slurm_available, squeue_states
from dmlbench.sweep.spec import (
    JOBS_FILE,
    LOCK_FILE,
    SWEEP_FILE,
    Sweep,
    SweepError,
    check_output_dir,
)
from dmlbench.sweep.status import KEPT_STATES, CellStatus, cell_statuses, read_jobs, sweep_status
from dmlbench.validation.requirements import Problem, cell_problems, format_problems


@dataclass
class SweepReport:
    sweep: Sweep
    cells: list[Cell]
    before: list[CellStatus]  # state of every cell when the command started
    submitted: dict[str, str] = field(default_factory=dict)  # run_id -> job id
    failed: list[str] = field(default_factory=list)  # run_ids that failed in a waited (local/inline) run
    dry_run: bool = False
    changed: list[ChangedCell] = field(default_factory=list)  # folders that ran other plugin code (sweep.reuse)
    problems: list[str] = field(default_factory=list)  # SLURM could not be asked or refused (one line each)
    # what the cells to run need and this machine lacks (extras, weights; data in a dry run), each once
    requirements: list[Problem] = field(default_factory=list)


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Two `dmlbench sweep` commands on the same folder must not both submit the same cells."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_local_job(out: Path, run_id: str, job_id: str) -> str | None:
    """Record a local job (outside the sweep's lock, taken here for the read-modify-write so another
    sweep's SLURM ids are never lost); returns the id recorded before, for `_unrecord_local_job`."""
    with sweep_lock(out):
        previous = read_jobs(out).get(run_id)
        record_jobs(out, {run_id: job_id})
    return previous


def _unrecord_local_job(out: Path, run_id: str, job_id: str, previous: str | None) -> None:
    """A local job that stepped aside (the cell was trained by another job, e.g. a SLURM sweep's): the
    cell's id goes back to what it was, unless someone recorded another since."""
    with sweep_lock(out):
        jobs = read_jobs(out)
        if jobs.get(run_id) != job_id:
            return
        if previous is None:
            del jobs[run_id]
        else:
            jobs[run_id] = previous
        rundir.atomic_write_json(out / JOBS_FILE, jobs)


def submit_slurm(sweep: Sweep, cells: Sequence[Cell], runner: str) -> dict[str, str]:
    """One job array per chunk of `max_array_size` cells (SLURM's MaxArraySize caps arrays)."""
    squeue_states()  # the controller answers (else one SchedulerError line, before sbatch prints its own)
    executor = make_executor(sweep, "slurm")
    chunk = int(sweep.executor.params.get("max_array_size", 1000))
    job_ids: dict[str, str] = {}
    for start in range(0, len(cells), chunk):
        part = cells[start : start + chunk]
        try:
            jobs = executor.map_array(
                CellJob(runner),
                [config_to_dict(c.config) for c in part],
                [str((sweep.runs_dir / c.run_id).resolve()) for c in part],
            )
        except OSError:
            raise  # our own files (disk full, read-only): the CLI's storage line
        except Exception as err:  # sbatch refused or the controller is unreachable (submitit's own errors)
            lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
            done = f"; {len(job_ids)} cell(s) were submitted before it (recorded in {JOBS_FILE})" if job_ids else ""
            raise SchedulerError(
                f"sbatch failed ({type(err).__name__}: {lines[-1] if lines else ''}){done}: rerun the sweep when SLURM answers"
            ) from None
        new = {c.run_id: str(j.job_id) for c, j in zip(part, jobs, strict=True)}
        record_jobs(sweep.output_dir, new)  # after every array: a crash later still knows these jobs
        job_ids.update(new)
    return job_ids


def run_local(sweep: Sweep, cells: Sequence[Cell], runner: str, log: Callable[[str], None]) -> tuple[dict[str, str], list[str]]:
    """Each cell in its own subprocess (submitit LocalExecutor), `local_parallelism` at a time; waits."""
    executor = make_executor(sweep, "local")
    parallel = max(1, int(sweep.executor.params.get("local_parallelism", 1)))
    queue = list(cells)
    running: list[tuple[Cell, Any]] = []
    job_ids: dict[str, str] = {}
    previous: dict[str, str | None] = {}
    failed: list[str] = []
    repeats = _Repeats()
    while queue or running:
        while queue and len(running) < parallel:
            cell = queue.pop(0)
            job = executor.submit(CellJob(runner), config_to_dict(cell.config), str((sweep.runs_dir / cell.run_id).resolve()))
            job_ids[cell.run_id] = f"local:{job.job_id}"
            previous[cell.run_id] = _record_local_job(sweep.output_dir, cell.run_id, job_ids[cell.run_id])
            running.append((cell, job))
        time.sleep(0.2)
        for cell, job in list(running):
            if job.done():
                running.remove((cell, job))
                skipped = _skipped(job)
                if skipped is not None:  # trained (or being trained) by another job: its id stays the cell's
                    _unrecord_local_job(sweep.output_dir, cell.run_id, job_ids[cell.run_id], previous[cell.run_id])
                ok = rundir.is_done(sweep.runs_dir / cell.run_id)
                if ok and skipped is not None:
                    skipped = "done by another job"
                why = skipped
                if not ok and skipped is None:
                    failed.append(cell.run_id)
                    folder = sweep.runs_dir / cell.run_id
                    error = rundir.error_summary(folder) if (folder / rundir.ERROR).is_file() else "no DONE marker"
                    why = repeats.describe(cell.run_id, error)
                word = "done  " if ok else "FAILED" if skipped is None else "busy  "
                log(f"{word} {cell.run_id} [{describe_cell(cell.grid)}]" + (f": {why}" if why else ""))
    return job_ids, failed


def _skipped(job: Any) -> str | None:
    """Why a finished local job did not train its cell (another trainer holds it), or None."""
    with contextlib.suppress(Exception):  # a failed job re-raises its error here: that is a failure, not a skip
        result = job.result()
        if isinstance(result, dict):
            return result.get("skipped")
    return None


def run_inline(sweep: Sweep, cells: Sequence[Cell], runner: str, log: Callable[[str], None]) -> list[str]:
    """The cells one after the other in this process; a failing cell is recorded and skipped."""
    failed: list[str] = []
    repeats = _Repeats()
    for i, cell in enumerate(cells, 1):
        log(f"[{i}/{len(cells)}] {cell.run_id} [{describe_cell(cell.grid)}]")
        try:
            result = run_cell(config_to_dict(cell.config), sweep.runs_dir / cell.run_id, runner)
            if isinstance(result, dict) and result.get("skipped") and not rundir.is_done(sweep.runs_dir / cell.run_id):
                log(f"busy   {cell.run_id}: {result['skipped']}")
        except Exception as err:  # recorded in the cell's error.txt by run_cell
            failed.append(cell.run_id)
            log(f"FAILED {cell.run_id}: {repeats.describe(cell.run_id, exception_summary(err))}")
    return failed


class _Repeats:
    """A failure seen before is logged as `same error as <first cell> (n-th time)`, not in full again."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, int]] = {}

    def describe(self, run_id: str, error: str) -> str:
        first, count = self.first.get(error, (run_id, 0))
        self.first[error] = (first, count + 1)
        return error if count == 0 else f"same error as {first} ({count + 1} cells so far)"


def run_sweep(
    sweep: Sweep,
    *,
    dry_run: bool = False,
    runner: str = DEFAULT_RUNNER,
    log: Callable[[str], None] = print,
    rerun_changed: bool = False,
    announce: Callable[[SweepReport], None] | None = None,
) -> SweepReport:
    """Expand, validate every cell, then submit (or run) the cells that are neither done nor queued.
    A cell whose folder ran other plugin code is refused, or rerun with `rerun_changed` (sweep.reuse).
    `announce` is called with the plan (states before, problems) before any cell is submitted or run."""
    check_output_dir(sweep)
    cells = expand(sweep, validate=True)
    kind = sweep.executor.kind
    if kind == "slurm" and not slurm_available():
        raise SweepError("executor 'slurm' needs the SLURM commands (sbatch, squeue, sacct) on PATH")
    problems: list[str] = []
    if dry_run:
        before = cell_statuses(sweep, cells, problems=problems)
        report = SweepReport(
            sweep, cells, before, dry_run=True, changed=changed_code_cells(sweep, cells, before), problems=problems
        )
        report.requirements = _problems(cells, before, runner, data=True)
        if announce is not None:
            announce(report)
        return report
    # checked before the lock creates the output folder: a sweep that cannot run here leaves nothing behind
    _refuse_unrunnable(sweep, cells, runner, log)
    with sweep_lock(sweep.output_dir):
        before = cell_statuses(sweep, cells, problems=problems)
        changed = changed_code_cells(sweep, cells, before)
        if changed:
            refuse_or_set_aside(sweep, changed, rerun_changed, log)
            problems.clear()
            before = cell_statuses(sweep, cells, problems=problems)
        report = SweepReport(sweep, cells, before, problems=problems)
        todo = _todo(cells, before)
        if announce is not None:
            announce(report)
        rundir.atomic_write_text(sweep.output_dir / SWEEP_FILE, yaml.safe_dump(sweep.to_dict(), sort_keys=False))
        write_cell_files(sweep, todo)
        if not todo:
            return report
        if kind == "slurm":
            if problems:  # squeue did not answer: sbatch will not either; the report says what is known
                return report
            try:
                report.submitted = submit_slurm(sweep, todo, runner)
            except SchedulerError as err:
                report.problems.append(str(err))  # after the cells submitted before it, which jobs.json records
            return report
    # local and inline runs wait for their cells: outside the lock, so `status` stays usable meanwhile
    if kind == "local":
        report.submitted, report.failed = run_local(sweep, todo, runner, log)
    else:
        report.submitted = {c.run_id: "inline" for c in todo}
        report.failed = run_inline(sweep, todo, runner, log)
    return report


def _problems(cells: Sequence[Cell], before: Sequence[CellStatus], runner: str, data: bool) -> list[Problem]:
    """What the cells still to run need and this machine lacks; none for a stand-in runner (tests), which
    reads neither data nor weights."""
    if runner != DEFAULT_RUNNER:
        return []
    return cell_problems([(c.run_id, c.config) for c in _todo(cells, before)], data=data)


def _todo(cells: Sequence[Cell], before: Sequence[CellStatus]) -> list[Cell]:
    todo = {s.run_id for s in before if s.state not in KEPT_STATES}
    return [c for c in cells if c.run_id in todo]


def _refuse_unrunnable(sweep: Sweep, cells: Sequence[Cell], runner: str, log: Callable[[str], None]) -> None:
    """A missing extra or weights file fails every cell it concerns the same way: refuse before submitting."""
    if runner != DEFAULT_RUNNER:
        return
    before = cell_statuses(sweep, cells)
    problems = _problems(cells, before, runner, data=False)
    total = len(_todo(cells, before))
    for line in format_problems([p for p in problems if not p.fatal], total):
        log(line)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        first = format_problems(fatal[:1], total)[0].removeprefix("error ")
        more = f"; {len(fatal) - 1} more problem(s): `dmlbench sweep --dry-run` lists them" if len(fatal) > 1 else ""
        raise SweepError(f"sweep '{sweep.name}': nothing submitted, cells cannot run here {first}{more}")


def cancel_sweep(target: str | Path) -> list[str]:
    """scancel this sweep's queued and running jobs; returns the job ids cancelled."""
    problems: list[str] = []
    sweep, statuses = sweep_status(target, problems)
    if sweep.executor.kind != "slurm":
        raise SweepError(f"sweep '{sweep.name}' ran with the {sweep.executor.kind} executor: nothing queued to cancel")
    if problems:
        raise SchedulerError(f"nothing cancelled: cannot ask SLURM which jobs are queued ({problems[0]})")
    active = [s.job_id for s in statuses if s.state in ("running", "pending") and s.job_id]
    if active:
        run_slurm_command(["scancel", *active])
    return active
