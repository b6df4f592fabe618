"""The lease fails safe (issue 28, point 1): a heartbeat that cannot be written, or a heartbeat thread that
died, stops the trainer instead of leaving a frozen heartbeat that a trainer on another host takes for a
dead holder's; a taker re-checks the heartbeat of the lease it moved aside before it creates its own.

The end-to-end test fills a real tmpfs (mounted as root) under the run folder while the trainer beats,
then runs a second trainer under another hostname (its own UTS namespace, `unshare -u`): exactly one of
them finishes the folder, and `done:` is logged once."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.configs import tiny_run_config, write_config
from support.paths import REPO

from dmlbench import rundir
from dmlbench.rundir.lease import LEASE, Lease, LeaseLostError, heartbeat_interval_s, move_aside, read_lease

HOSTNAME = "other-node"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (root only; the test skips elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root (mount a tmpfs, another hostname with unshare -u)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it (remove it to free the space)."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as fh:  # the last partial block
        while True:
            fh.write(b"\0" * 4096)
    return filler


def test_unwritable_heartbeat_and_dead_thread_lose_the_lease(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        logged: list[str] = []
        lease = Lease(disk / "run", log=logged.append, heartbeat_s=3600).acquire()
        before = read_lease(disk / "run")
        filler = fill(disk)
        lease.heartbeat()  # the thread's beat, due now: the disk is full
        filler.unlink()
        with pytest.raises(LeaseLostError, match=r"could not refresh the heartbeat in .*lease.json: No space left on device"):
            lease.check()
        lease.heartbeat()  # writable again, but a lost lease stays lost: this trainer has stopped
        with pytest.raises(LeaseLostError):
            lease.confirm()
        assert read_lease(disk / "run") == before  # the heartbeat was never refreshed
        assert [p.name for p in (disk / "run").iterdir()] == [LEASE]  # no temporary file left
        lease.release()
        assert not (disk / "run" / LEASE).exists()  # still ours: released for the next trainer
        assert any("lease: lost: could not refresh the heartbeat" in line for line in logged)

    # A heartbeat thread that stopped (whatever stopped it) is noticed by the next check.
    lease = Lease(tmp_path / "run2", heartbeat_s=3600).acquire()
    lease.check()
    lease._stop.set()  # the thread ends as if it had died
    assert lease._thread is not None
    lease._thread.join(5)
    with pytest.raises(LeaseLostError, match="its heartbeat thread stopped"):
        lease.check()
    lease.release()


def test_a_heartbeat_fallen_behind_is_refreshed_by_check(tmp_path: Path) -> None:
    lease = Lease(tmp_path, heartbeat_s=0.05).acquire()
    lease._stop.set()  # the thread stops beating...
    assert lease._thread is not None
    lease._thread.join(5)
    lease._thread = None
    lease._start_heartbeat()  # ...and a new one starts that has not beaten yet
    lease.heartbeat_s = 3600
    time.sleep(0.2)  # > 2.5 x the interval the last beat was made under
    before = read_lease(tmp_path)
    lease.heartbeat_s = 0.05
    lease.check()  # behind: beats here instead of stopping (the lease is still ours)
    after = read_lease(tmp_path)
    assert before is not None and after is not None and after.heartbeat > before.heartbeat
    lease.release()


def test_taker_puts_back_a_lease_whose_holder_beat_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMLBENCH_LEASE_STALE_S", "1")
    assert heartbeat_interval_s() == pytest.approx(0.2)  # a fifth of the stale limit: never stale while beating
    holder = Lease(tmp_path, heartbeat_s=3600).acquire()
    judged = read_lease(tmp_path)
    assert judged is not None
    holder.heartbeat()  # alive after all: it beats between the taker's judgement and its rename
    assert move_aside(tmp_path, judged) is False  # the taker's re-check before it writes its own lease
    current = read_lease(tmp_path)
    assert current is not None and current.token == judged.token and current.heartbeat > judged.heartbeat
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEASE]
    holder.confirm()  # the holder keeps its lease
    holder.release()


def _train(cfg: Path, env: dict[str, str], hostname: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dmlbench", "train", str(cfg), "--quiet"]
    if hostname is not None:  # another host: its own UTS namespace with another hostname
        cmd = ["unshare", "-u", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *cmd]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_full_disk_at_the_heartbeat_leaves_one_writer(tiny_synthshop: Path, tmp_path: Path) -> None:
    """Trainer A's heartbeat (every 0.8 s) hits a full disk early in epoch 2, its next checkpoint an epoch
    away. A must stop at its next step (exit 1, one line naming the heartbeat, not the checkpoint) and
    release the folder; trainer B on another host (4 s stale limit) then takes it over and finishes it:
    one result, one `done:`, one DONE. (Before the fix A trained on with a dead heartbeat thread and B
    took over once the frozen heartbeat looked stale: both finished.)"""
    with tmpfs(tmp_path / "disk", "96m") as disk:
        cfg = tiny_run_config(
            tiny_synthshop,
            disk / "runs",
            model={"backbone": "mobilenet_v3_small", "fc_dim": 32, "emb_dim": 16},
            train={"epochs": 2},
            sampler={"params": {"classes_per_batch": 4, "images_per_class": 2}, "batches_per_epoch": 20},
            eval={"batch_size": 64, "every_epochs": 0},
        )
        path = write_config(tmp_path / "run.yaml", cfg)
        env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "DMLBENCH_LEASE_STALE_S": "4", "OMP_NUM_THREADS": "1"}
        first = _train(path, env)
        runs = disk / "runs"
        deadline = time.time() + 600
        while not any(runs.glob(f"*/{rundir.CHECKPOINT}")):  # epoch 1 done: A is training epoch 2
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.05)
        (run_dir,) = runs.iterdir()
        filler = fill(disk)
        try:
            first_out, first_err = first.communicate(timeout=600)  # full until A has stopped
        finally:
            filler.unlink()

        outputs: list[tuple[int, str, str]] = []
        while True:  # B retries while a live lease is held (exit 1, "run folder busy")
            second = _train(path, env, hostname=HOSTNAME)
            out, err = second.communicate(timeout=600)
            outputs.append((second.returncode, out, err))
            if second.returncode != 0 and "run folder busy" in err and time.time() < deadline:
                time.sleep(1)
                continue
            break
        log = (run_dir / rundir.LOG).read_text()
        finished = rundir.is_done(run_dir) and (run_dir / rundir.METRICS).is_file()
        left = sorted(p.name for p in run_dir.iterdir())

    b_code, b_out, b_err = outputs[-1]
    assert b_code == 0, b_err
    assert first.returncode == 1, first_out + first_err
    lines = [ln for ln in first_err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dmlbench: run stopped: could not refresh the heartbeat"), first_err
    assert "No space left on device" in lines[0]
    assert "run folder:" not in first_out and "run folder:" in b_out  # B alone printed a result
    assert finished and log.count("done: ") == 1, log
    assert "resuming" in log  # B continued from A's checkpoint
    assert LEASE not in left
