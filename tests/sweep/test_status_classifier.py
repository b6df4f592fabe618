"""The sweep status classifier against fake `squeue` / `sacct` on PATH: every scheduler verdict a cell
can get (running, pending, completed without DONE, timeout, out of memory, "CANCELLED by 0", array
tasks collapsed into one sacct row, no sacct row at all), and the run folder's own evidence (DONE,
error.txt, a live lease) taking precedence where it should."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from support.sweeps import sweep_dict

from dmlbench import rundir
from dmlbench.config import dump_config
from dmlbench.rundir.lease import LEASE
from dmlbench.sweep import cell_statuses, expand, sweep_from_dict

# (job id, squeue row state or None, sacct rows, folder evidence, expected state, expected error)
CASES = [
    ("100_0", "RUNNING", [], None, "running", None),
    ("100_1", "PENDING", [], None, "pending", None),
    ("100_2", "REQUEUED", [], None, "pending", None),
    ("100_3", None, ["100_3|COMPLETED"], None, "failed", "SLURM job COMPLETED but the run has no DONE marker"),
    ("100_4", None, ["100_4|TIMEOUT"], None, "failed", "SLURM job TIMEOUT"),
    ("100_5", None, ["100_5|OUT_OF_MEMORY"], None, "failed", "SLURM job OUT_OF_MEMORY"),
    ("100_6", None, ["100_6|CANCELLED by 0"], None, "cancelled", "SLURM job CANCELLED"),
    ("100_7", None, ["100_[7-9%4]|CANCELLED by 1000"], None, "cancelled", "SLURM job CANCELLED"),  # never started
    ("101_0", None, [], None, "interrupted", None),  # sacct has no row (lagging, or purged)
    ("101_1", None, ["101_1|FAILED"], "error", "failed", "DatasetError: root not found"),  # the run's own error
    ("101_2", "RUNNING", [], "done", "done", None),  # DONE wins (the job is still finishing)
    ("101_3", None, ["101_3|NODE_FAIL"], "lease", "running", None),  # a live trainer holds it (sacct lag)
    ("101_4", None, ["101_4|CANCELLED+"], None, "cancelled", "SLURM job CANCELLED"),
]


def fake_slurm(bin_dir: Path, squeue: list[str], sacct: list[str]) -> None:
    bin_dir.mkdir()
    for name, rows in (("squeue", squeue), ("sacct", sacct)):
        (bin_dir / f"{name}.out").write_text("".join(f"{r}\n" for r in rows))
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {bin_dir}/{name}.calls\ncat {bin_dir}/{name}.out\n')
        script.chmod(0o755)


def test_each_scheduler_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"seed": list(range(len(CASES)))}))
    cells = expand(sweep, validate=False)
    jobs = {}
    for cell, (job, _queued, _acct, evidence, _state, _error) in zip(cells, CASES, strict=True):
        jobs[cell.run_id] = job
        folder = sweep.runs_dir / cell.run_id
        folder.mkdir(parents=True)
        rundir.atomic_write_text(folder / rundir.CONFIG, dump_config(cell.config))
        if evidence == "error":
            rundir.atomic_write_text(folder / rundir.ERROR, "DatasetError: root not found\n\nTraceback ...\n")
        elif evidence == "done":
            rundir.mark_done(folder, {})
        elif evidence == "lease":  # a trainer on another node whose job sacct already reports as ended
            now = time.time()
            lease = {"token": "x", "host": "node9", "pid": 7, "pid_start": None, "slurm_job": job, "acquired": now, "heartbeat": now}
            (folder / LEASE).write_text(json.dumps(lease))
    rundir.atomic_write_json(sweep.output_dir / "jobs.json", jobs)
    squeue_rows = [f"{job}|{state}" for job, state, *_ in CASES if state] + ["101_3|RUNNING"]
    fake_slurm(tmp_path / "bin", squeue_rows, [row for case in CASES for row in case[2]])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("USER", "tester")

    got = [(s.job_id, s.state, s.error) for s in cell_statuses(sweep, cells)]
    assert got == [(job, state, error) for job, _q, _a, _e, state, error in CASES]
    assert (tmp_path / "bin" / "squeue.calls").read_text().splitlines() == ["-r -h -u tester -o %i|%T"]
    # one sacct call for every cell squeue no longer lists, by array
    (call,) = (tmp_path / "bin" / "sacct.calls").read_text().splitlines()
    assert call == "-n -P -X -o JobID,State -j 100,101"


def test_holder_shown_for_a_folder_trained_outside_the_scheduler(tmp_path: Path) -> None:
    """A local cell whose folder another process trains right now is `running`, with its holder: a second
    `sweep` must not start it again."""
    from dmlbench.rundir.lease import Lease
    from dmlbench.sweep.status import format_status_table

    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"seed": [0, 1]}))
    cells = expand(sweep, validate=False)
    rundir.atomic_write_json(sweep.output_dir / "jobs.json", {c.run_id: "local:1" for c in cells})
    with Lease(sweep.runs_dir / cells[0].run_id):
        statuses = cell_statuses(sweep, cells)
        assert [s.state for s in statuses] == ["running", "interrupted"]
        assert statuses[0].holder is not None and statuses[0].holder.startswith(f"{socket.gethostname()} pid {os.getpid()}")
        table = format_status_table(statuses)
        assert "lease holder" in table.splitlines()[0] and f"pid {os.getpid()}" in table
    assert [s.state for s in cell_statuses(sweep, cells)] == ["interrupted", "interrupted"]  # released
