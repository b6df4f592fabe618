"""The run folder's lease: one trainer per folder, a refusal naming the holder, stale-lease takeover
(dead pid, reused pid, SLURM job gone, old heartbeat), heartbeat refresh and loss detection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmlbench.rundir.lease import (
    LEASE,
    Lease,
    LeaseLostError,
    RunFolderBusyError,
    live_holder,
    read_lease,
    stale_reason,
)

HOLD = """
import sys, time
from dmlbench.rundir.lease import Lease
lease = Lease(sys.argv[1], heartbeat_s=0.1).acquire()
print("held", flush=True)
time.sleep(600)
"""


def write_lease(run_dir: Path, **fields: object) -> None:
    now = time.time()
    data = {"token": "t0", "host": "elsewhere", "pid": 1, "pid_start": None, "slurm_job": None, "acquired": now, "heartbeat": now}
    data.update(fields)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LEASE).write_text(json.dumps(data))


def fake_squeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "squeue"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_second_trainer_refuses_naming_the_holder_until_released(tmp_path: Path) -> None:
    first = Lease(tmp_path / "run").acquire()
    with pytest.raises(RunFolderBusyError, match=rf"being trained by {socket.gethostname()} pid {os.getpid()}"):
        Lease(tmp_path / "run").acquire()
    assert live_holder(tmp_path / "run") is not None
    first.release()
    assert not (tmp_path / "run" / LEASE).exists()
    with Lease(tmp_path / "run"):
        assert read_lease(tmp_path / "run") is not None
    assert not [p.name for p in (tmp_path / "run").iterdir()]  # no temporary or stale files left


def test_sigkilled_holder_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid}"):
            Lease(run_dir).acquire()
        beat = read_lease(run_dir)
        time.sleep(0.4)
        after = read_lease(run_dir)
        assert beat is not None and after is not None and after.heartbeat > beat.heartbeat  # the thread beats
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    logged: list[str] = []
    lease = Lease(run_dir, log=logged.append).acquire()
    assert logged == [f"lease: took over the stale lease of {after.describe(now=after.heartbeat)} (pid {holder.pid} on this host is dead)"]
    assert read_lease(run_dir).pid == os.getpid()  # type: ignore[union-attr]
    lease.release()


def test_reused_pid_is_not_the_holder(tmp_path: Path) -> None:
    # our own live pid, but the lease recorded another process start time: that holder is gone
    write_lease(tmp_path, host=socket.gethostname(), pid=os.getpid(), pid_start="1")
    assert "now another process" in (stale_reason(read_lease(tmp_path)) or "")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "squeue", "stale"),
    [
        ({"heartbeat": 0.0}, None, "heartbeat"),  # another host, silent for decades
        ({}, None, None),  # another host, fresh heartbeat
        ({"slurm_job": "77_3"}, "", "SLURM job 77_3 is no longer in the queue"),
        ({"slurm_job": "77_3", "heartbeat": 0.0}, "RUNNING\\n", None),  # queued job: held whatever its heartbeat
    ],
)
def test_stale_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: dict[str, object], squeue: str | None, stale: str | None
) -> None:
    if squeue is not None:
        fake_squeue(tmp_path, monkeypatch, squeue)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    write_lease(tmp_path / "run", **fields)
    reason = stale_reason(read_lease(tmp_path / "run"))  # type: ignore[arg-type]
    assert (reason is None) if stale is None else (stale in (reason or "")), reason
    if stale is None:
        with pytest.raises(RunFolderBusyError, match="being trained by elsewhere pid 1"):
            Lease(tmp_path / "run").acquire()
    else:
        Lease(tmp_path / "run").acquire().release()


def test_requeued_slurm_job_takes_over_its_own_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_squeue(tmp_path, monkeypatch, "RUNNING\\n")  # the job is running: it is us, restarted elsewhere
    monkeypatch.setenv("SLURM_JOB_ID", "80")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    write_lease(tmp_path / "run", slurm_job="77_3")
    lease = Lease(tmp_path / "run").acquire()
    assert read_lease(tmp_path / "run").slurm_job == "77_3"  # type: ignore[union-attr]
    lease.release()


def test_stale_limit_from_the_environment_and_unreadable_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_lease(tmp_path / "a", heartbeat=time.time() - 30)
    assert stale_reason(read_lease(tmp_path / "a")) is None  # type: ignore[arg-type]
    monkeypatch.setenv("DMLBENCH_LEASE_STALE_S", "10")
    assert "limit 10 s" in (stale_reason(read_lease(tmp_path / "a")) or "")  # type: ignore[arg-type]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / LEASE).write_text('{"tok')  # cut short by a disk fault
    assert stale_reason(read_lease(tmp_path / "b")) == "the lease file is unreadable"  # type: ignore[arg-type]
    Lease(tmp_path / "b").acquire().release()


def test_a_lease_taken_over_while_stalled_is_noticed(tmp_path: Path) -> None:
    lease = Lease(tmp_path, heartbeat_s=3600).acquire()
    write_lease(tmp_path, token="other", host="node7", pid=42)  # someone judged us stale and took over
    lease.heartbeat()
    with pytest.raises(LeaseLostError, match="taken over by node7 pid 42"):
        lease.check()
    lease.release()
    assert read_lease(tmp_path).token == "other"  # type: ignore[union-attr]  # not ours to remove
