"""The state of each cell of a sweep (done / running / pending / failed / cancelled / interrupted /
unsubmitted) from its run folder, jobs.json and the scheduler, and the status table printed for it.

A cell whose run folder holds a live lease (`dmlbench.rundir.lease`) is `running` whoever trains it
(another `sweep` command, `dmlbench train`, a job squeue no longer lists): a re-run never starts it
again. The table shows each lease's holder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.rundir import lease
from dmlbench.sweep.expand import Cell, describe_cell, expand
from dmlbench.sweep.slurm import ACTIVE_RUNNING, sacct_states, slurm_available, squeue_states
from dmlbench.sweep.spec import JOBS_FILE, Sweep, load_sweep

# failed / cancelled / interrupted / unsubmitted cells are all submitted again by a re-run.
STATES = ("done", "running", "pending", "failed", "cancelled", "interrupted", "unsubmitted")


@dataclass
class CellStatus:
    run_id: str
    state: str  # one of STATES
    grid: dict[str, Any]
    job_id: str | None = None
    error: str | None = None  # first line of the error, for failed cells
    holder: str | None = None  # who holds the run folder's lease (dmlbench.rundir.lease), while it trains


def read_jobs(out: Path) -> dict[str, str]:
    path = out / JOBS_FILE
    return rundir.read_json(path) if path.is_file() else {}


def cell_statuses(sweep: Sweep, cells: Sequence[Cell], *, query_scheduler: bool = True) -> list[CellStatus]:
    """done / running / pending / failed / cancelled / interrupted / unsubmitted per cell, from the run
    folders, jobs.json, and (for SLURM sweeps) squeue + sacct. A run's own error.txt wins over the
    scheduler's verdict: a cell whose run failed is `failed` even if its job was later cancelled."""
    jobs = read_jobs(sweep.output_dir)
    slurm_ids = {rid: j for rid, j in jobs.items() if not j.startswith("local:")}
    ask_slurm = bool(query_scheduler and slurm_ids and slurm_available())
    live = squeue_states() if ask_slurm else {}
    queued = set(live) if ask_slurm else None
    out: list[CellStatus] = []
    need_sacct: list[CellStatus] = []
    for cell in cells:
        folder = sweep.runs_dir / cell.run_id
        job = jobs.get(cell.run_id)
        status = CellStatus(cell.run_id, "unsubmitted", cell.grid, job)
        folder_state = rundir.run_state(folder)  # what the folder alone says; the scheduler refines it
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
        elif ask_slurm and cell.run_id in slurm_ids:
            need_sacct.append(status)
        elif job is not None or folder_state == "started":
            status.state = "interrupted"
        out.append(status)
    if need_sacct:
        final = sacct_states([s.job_id for s in need_sacct if s.job_id])
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


def sweep_status(target: str | Path) -> tuple[Sweep, list[CellStatus]]:
    sweep = load_sweep(target)
    return sweep, cell_statuses(sweep, expand(sweep, validate=False))


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
