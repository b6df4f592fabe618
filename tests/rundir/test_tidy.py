"""No disk leak from killed writes (issue 28, point 8): temporary files of a killed write are removed
when the run starts again; a DONE folder left with both checkpoints, a stale lease and temporaries (a
kill between DONE and pruning) is pruned by the next `train`, `status` or `sweep` of it, as its own
`train.keep` says; a DONE folder whose lease holder is alive is left to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config, write_config

from dmlbench import rundir
from dmlbench.rundir.lease import LEASE, Lease
from dmlbench.rundir.tidy import LEASE_LEFTOVER_AGE_S, remove_temp_files, tidy_done

TESTS = Path(__file__).resolve().parents[1]
STANDIN = "support.standin:standin_train_run"
CHECKPOINT_TMP = ".checkpoint.pt.0123456789abcdef0123456789abcdef.tmp"
KILLED_WRITES = (CHECKPOINT_TMP, ".metrics.json.k3x9q1.tmp", ".history.jsonl.a8b7c6.tmp")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leave_killed_after_done(run_dir: Path, *, lease_holder: str = "dead") -> None:
    """What a trainer killed between DONE and its pruning leaves: both checkpoints and their record, its
    lease (its pid now dead), and (from earlier kills) temporary files."""
    for name in (rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS):
        (run_dir / name).write_bytes(b"\0" * 200_000)
    rundir.atomic_write_json(run_dir / rundir.CHECKPOINT_MANIFEST, {})
    for name in KILLED_WRITES:
        (run_dir / name).write_bytes(b"\0" * 1000)
    if lease_holder == "dead":
        now = time.time()
        info = {"token": "t", "host": socket.gethostname(), "pid": dead_pid(), "pid_start": None, "slurm_job": None,
                "acquired": now, "heartbeat": now}  # fmt: skip
        (run_dir / LEASE).write_text(json.dumps(info))


def leftovers(run_dir: Path) -> list[str]:
    names = {p.name for p in run_dir.iterdir()}
    return sorted(names & {rundir.CHECKPOINT, rundir.CHECKPOINT_PREVIOUS, rundir.CHECKPOINT_MANIFEST, LEASE, *KILLED_WRITES})


def test_temp_files_removal_spares_a_live_lease_attempt(tmp_path: Path) -> None:
    for name in (*KILLED_WRITES, ".lease.json.fresh.tmp", ".lease.json.old.tmp", ".cell.lock", "run.log"):
        (tmp_path / name).write_text("x")
    old = time.time() - LEASE_LEFTOVER_AGE_S - 5
    os.utime(tmp_path / ".lease.json.old.tmp", (old, old))
    removed = remove_temp_files(tmp_path)
    assert sorted(removed) == sorted([*KILLED_WRITES, ".lease.json.old.tmp"])
    # another trainer's lease attempt in flight, the tune cell lock and the log stay
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cell.lock", ".lease.json.fresh.tmp", "run.log"]


@pytest.mark.parametrize("keep", ["weights", "full"])
def test_done_folder_is_pruned_as_its_own_keep_says_unless_its_holder_lives(tmp_path: Path, keep: str) -> None:
    (tmp_path / rundir.CONFIG).write_text(yaml.safe_dump({"train": {"keep": keep}}))
    leave_killed_after_done(tmp_path, lease_holder="live")
    with Lease(tmp_path):  # the trainer is still pruning: nothing is touched while it lives
        rundir.mark_done(tmp_path, {"run_id": "x"})
        assert tidy_done(tmp_path) == {}
    leave_killed_after_done(tmp_path)
    removed = tidy_done(tmp_path)
    kept = sorted([rundir.CHECKPOINT, rundir.CHECKPOINT_MANIFEST]) if keep == "full" else []
    assert leftovers(tmp_path) == kept
    assert removed[rundir.CHECKPOINT_PREVIOUS] == 200_000 and removed[CHECKPOINT_TMP] == 1000 and LEASE in removed


@pytest.mark.slow
def test_train_removes_killed_writes_at_start_and_prunes_its_done_folder(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = tiny_run_config(
        tiny_synthshop, tmp_path / "runs", model={"backbone": "mobilenet_v3_small", "fc_dim": 16, "emb_dim": 8},
        train={"epochs": 1}, sampler={"batches_per_epoch": 2}, eval={"batch_size": 64, "every_epochs": 0},
    )  # fmt: skip
    path = write_config(tmp_path / "run.yaml", cfg)
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    for name in KILLED_WRITES:  # an earlier attempt killed inside three writes
        (run_dir / name).write_bytes(b"\0" * 1000)
    first = run_cli("train", str(path), "--quiet", "--run-dir", str(run_dir))
    assert first.returncode == 0, first.stderr
    assert leftovers(run_dir) == []
    assert "removed 3 temporary file(s) of interrupted writes" in (run_dir / rundir.LOG).read_text()

    leave_killed_after_done(run_dir)
    again = run_cli("train", str(path), "--quiet", "--run-dir", str(run_dir))
    assert again.returncode == 0 and "already finished" in again.stdout, again.stderr
    assert leftovers(run_dir) == [] and (run_dir / rundir.WEIGHTS).is_file() and rundir.is_done(run_dir)


@pytest.mark.slow  # three CLI subprocesses
def test_status_and_sweep_prune_done_cells(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = {
        "name": "t",
        "output_dir": str(tmp_path / "out"),
        "base": {"data": {"root": str(tmp_path / "data")}, "train": {"epochs": 1}},
        "grid": {"seed": [0, 1]},
        "executor": {"kind": "inline"},
    }
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(spec))
    env = {"PYTHONPATH": str(TESTS)}
    assert run_cli("sweep", str(sweep_file), "--runner", STANDIN, env=env).returncode == 0
    cells = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(cells) == 2 and all(rundir.is_done(c) for c in cells)

    leave_killed_after_done(cells[0])
    status = run_cli("status", str(tmp_path / "out"), env=env)
    assert status.returncode == 0 and status.stdout.strip().endswith("2 done"), status.stdout + status.stderr
    assert leftovers(cells[0]) == []

    leave_killed_after_done(cells[1])
    again = run_cli("sweep", str(sweep_file), "--runner", STANDIN, env=env)
    assert again.returncode == 0, again.stderr
    assert leftovers(cells[1]) == []
