"""The state of each cell of a sweep (done / running / pending / failed / cancelled / interrupted /
unsubmitted) from its run folder, jobs.json and the scheduler, and the status table printed for it.

A cell whose run folder holds a live lease (`dmlbench.rundir.lease`) is `running` whoever trains it
(another `sweep` command, `dmlbench train`, a job squeue no longer lists): a re-run never starts it
again. The table shows each lease's holder."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.errors import FileFormatError, SchedulerError
from dmlbench.rundir import lease
from dmlbench.rundir.tidy import needs_tidy, tidy_done
from dmlbench.sweep.expand import Cell, describe_cell, expand
from dmlbench.sweep.slurm import ACTIVE_RUNNING, sacct_states, slurm_available, squeue_states
from dmlbench.sweep.spec import JOBS_FILE, Sweep, load_sweep

# failed / cancelled / interrupted / unsubmitted cells are all submitted again by a re-run; `unknown`:
# a cell with a SLURM job whose state SLURM could not be asked (controller unreachable), never resubmitted.
STATES = ("done", "running", "pending", "failed", "cancelled", "interrupted", "unsubmitted", "unknown")
KEPT_STATES = ("done", "running", "pending", "unknown")  # a re-run of the sweep does not submit these


@dataclass
class CellStatus:
    run_id: str
    state: str  # one of STATES
    grid: dict[str, Any]
    job_id: str | None = None
    error: str | None = None  # first line of the error, for failed cells
    holder: str | None = None  # who holds the run folder's lease (dmlbench.rundir.lease), while it trains


def read_jobs(out: Path) -> dict[str, str]:
    """jobs.json (run_id -> job id); a broken one is one FileFormatError line saying what to do."""
    path = out / JOBS_FILE
    if not path.is_file():
        return {}
    fix = (
        "it records each cell's SLURM or local job; delete it to go on (a re-run may then submit a cell whose "
        "job is still queued: that job finds the cell's lease taken or the cell done, and steps aside)"
    )
    jobs = rundir.read_json(path, dict, fix)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in jobs.items()):
        raise FileFormatError(f"{path} must map run ids to job ids (strings): {fix}")
    return jobs


def cell_statuses(
    sweep: Sweep, cells: Sequence[Cell], *, query_scheduler: bool = True, problems: list[str] | None = None
) -> list[CellStatus]:
    """done / running / pending / failed / cancelled / interrupted / unsubmitted per cell, from the run
    folders, jobs.json, and (for SLURM sweeps) squeue + sacct. A run's own error.txt wins over the
    scheduler's verdict: a cell whose run failed is `failed` even if its job was later cancelled.
    When SLURM cannot be asked, its message is appended to `problems` and the cells only it could place
    are `unknown`; everything else is what the run folders show. A DONE folder that a trainer killed after
    DONE left unpruned is pruned on the way (`rundir.tidy`)."""
    jobs = read_jobs(sweep.output_dir)
    slurm_ids = {rid: j for rid, j in jobs.items() if not j.startswith("local:")}
    ask_slurm = bool(query_scheduler and slurm_ids and slurm_available())
    live: dict[str, str] = {}
    unreachable: str | None = None
    if ask_slurm:
        try:
            live = squeue_states()
        except SchedulerError as err:
            unreachable = str(err)
    queued = set(live) if ask_slurm and unreachable is None else None
    out: list[CellStatus] = []
    need_sacct: list[CellStatus] = []
    for cell in cells:
        folder = sweep.runs_dir / cell.run_id
        job = jobs.get(cell.run_id)
        status = CellStatus(cell.run_id, "unsubmitted", cell.grid, job)
        try:
            names = set(os.listdir(folder))
        except OSError:
            names = set()
        folder_state = rundir.run_state(folder, names)  # what the folder alone says; the scheduler refines it
        if folder_state == "done" and needs_tidy(names):
            tidy_done(folder, queued_jobs=queued)  # left unpruned by a trainer killed after DONE
        holder = None if folder_state == "done" else lease.read_lease(folder)
        if holder is not None:
            status.holder = holder.describe()
        if folder_state == "done":
            status.state = "done"
        elif job in live and live[job] in ACTIVE_RUNNING:
            status.state = "running"
        elif job in live:
            status.state = "pending"
        elif holder is not None and lease.stale_reason(holder, queued_jobs=queued) is None:
            # trained right now by someone (another sweep's process, `dmlbench train`): never resubmitted
            status.state = "running"
        elif folder_state == "failed":
            status.state, status.error = "failed", rundir.error_summary(folder)
        elif unreachable is not None and cell.run_id in slurm_ids:
            status.state, status.error = "unknown", "SLURM not reachable: its job may still be queued"
        elif ask_slurm and cell.run_id in slurm_ids:
            need_sacct.append(status)
        elif job is not None or folder_state == "started":
            status.state = "interrupted"
        out.append(status)
    final: dict[str, str] = {}
    if need_sacct:
        try:
            final = sacct_states([s.job_id for s in need_sacct if s.job_id])
        except SchedulerError as err:
            unreachable = str(err)
            for status in need_sacct:
                status.state, status.error = "unknown", "SLURM not reachable: how its job ended is not known"
            need_sacct = []
    if unreachable is not None and problems is not None:
        problems.append(unreachable)
    for status in need_sacct:
        job = status.job_id or ""
        # an array whose remaining tasks never started is reported as one row under its base id
        state = final.get(job) or final.get(job.split("_")[0], "UNKNOWN")
        if state == "COMPLETED":
            status.state, status.error = "failed", "SLURM job COMPLETED but the run has no DONE marker"
        elif state in ("UNKNOWN", "PENDING", "RUNNING"):
            # sacct lags squeue by a second or two; a vanished job with no record was interrupted
            status.state = "interrupted"
        elif state.rstrip("+") == "CANCELLED":  # sacct: "CANCELLED by <uid>" (first word kept), or "CANCELLED+"
            status.state, status.error = "cancelled", "SLURM job CANCELLED"
        else:
            status.state, status.error = "failed", f"SLURM job {state}"
    return out


def scheduler_note(problem: str, statuses: Sequence[CellStatus]) -> str:
    """The one line saying SLURM could not be asked, and what that leaves unknown."""
    unknown = sum(s.state == "unknown" for s in statuses)
    return (
        f"cannot ask SLURM ({problem}): {unknown} cell(s) with a SLURM job show as 'unknown' and are not "
        "submitted again; every other state is what the run folders show"
    )


def sweep_status(target: str | Path, problems: list[str] | None = None) -> tuple[Sweep, list[CellStatus]]:
    sweep = load_sweep(target)
    return sweep, cell_statuses(sweep, expand(sweep, validate=False), problems=problems)


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_status_table(statuses: Sequence[CellStatus], actions: dict[str, str] | None = None) -> str:
    rows = []
    for s in statuses:
        row = [s.state, s.run_id, s.job_id or "-", _short(describe_cell(s.grid))]
        if actions is not None:
            row.insert(1, actions.get(s.run_id, ""))
        if any(st.holder for st in statuses):
            row.append(s.holder or "")
        rows.append(row + [s.error or ""])  # last column: the whole first line
    header = ["state", "run_id", "job", "cell", "error"]
    if any(st.holder for st in statuses):
        header.insert(-1, "lease holder")
    if actions is not None:
        header.insert(1, "action")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def state_counts(statuses: Sequence[CellStatus]) -> str:
    return count_states(s.state for s in statuses)


def count_states(states: Iterable[str]) -> str:
    """"3 done, 1 failed": how many cells are in each state, in STATES order."""
    counts = Counter(states)
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "no cells"


def grouped_errors(statuses: Sequence[CellStatus]) -> list[str]:
    """The failed cells' errors, each distinct first line once with its count (most frequent first):
    a failure that repeats in every cell is one line, not one per cell.

    >>> failed = [CellStatus(f"r{i}", "failed", {}, error="MissingModuleError: x") for i in range(3)]
    >>> grouped_errors([*failed, CellStatus("r9", "failed", {}, error="ValueError: y")])
    ['3 cells (e.g. r0): MissingModuleError: x', '1 cell (r9): ValueError: y']
    """
    by_error: dict[str, list[str]] = {}
    for s in statuses:
        if s.state == "failed":
            by_error.setdefault(s.error or "(no error recorded)", []).append(s.run_id)
    lines = []
    for error, run_ids in sorted(by_error.items(), key=lambda kv: -len(kv[1])):
        which = f"{len(run_ids)} cells (e.g. {run_ids[0]})" if len(run_ids) > 1 else f"1 cell ({run_ids[0]})"
        lines.append(f"{which}: {error}")
    return lines
