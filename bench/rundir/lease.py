"""One writer per run folder: the lease a trainer holds while it trains a run folder.

``lease.json`` names the holder (host, pid, the pid's start time, SLURM job id) and a heartbeat that a
background thread refreshes every `heartbeat_interval_s()` seconds (30 s, or a fifth of the stale limit
when that is shorter, so a live holder never looks stale). It is created atomically with `os.link` of a
fully written temporary file (fails when the lease exists; reliable on NFS, unlike `flock`), so a
reader never sees a half-written lease and two trainers never both create one.

A lease whose holder is gone is stale and is taken over:

- same host, and the pid is dead (or now belongs to another process: its start time differs);
- the holder's SLURM job is no longer in the queue (or it is our own job id: a requeued job's
  previous incarnation is gone);
- otherwise (another host, no SLURM) the heartbeat is older than `stale_after_s()` (default 10 min,
  environment variable ``DMLBENCH_LEASE_STALE_S``).

Takeover renames the stale lease aside (one renamer wins), re-checks that what it renamed is the lease
it judged stale, heartbeat included (a holder that beat meanwhile is alive: the lease is put back), and
then creates its own.

The holder fails safe: a heartbeat that cannot be written (`ENOSPC`, an I/O error), a heartbeat thread
that died, or a lease found no longer its own (taken over after a long stall) marks the lease lost for
good, and the trainer stops with one line at its next step (`Lease.check`, cheap: no I/O) or before its
next write (`Lease.confirm`: refreshes the heartbeat synchronously and re-reads the lease). It never trains
on under a frozen heartbeat that a trainer elsewhere would take for a dead one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dmlbench.errors import DmlbenchError

LEASE = "lease.json"
HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 600.0


class RunFolderBusyError(DmlbenchError, RuntimeError):
    """Another live trainer holds the run folder's lease."""

    exit_code = 1
    label = "run folder busy"


class LeaseLostError(DmlbenchError, RuntimeError):
    """This trainer's lease is lost (taken over, or its heartbeat could not be written): it stops."""

    exit_code = 1
    label = "run stopped"


def stale_after_s() -> float:
    try:
        return float(os.environ.get("DMLBENCH_LEASE_STALE_S", DEFAULT_STALE_AFTER_S))
    except ValueError:
        return DEFAULT_STALE_AFTER_S


def heartbeat_interval_s() -> float:
    """Seconds between heartbeats: `HEARTBEAT_S`, or a fifth of the stale limit when that is shorter."""
    return min(HEARTBEAT_S, stale_after_s() / 5)


def own_slurm_job() -> str | None:
    """This process's SLURM job as squeue names it (array tasks as ARRAY_TASK), or None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else job


def pid_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class LeaseInfo:
    """What lease.json says about its holder."""

    token: str
    host: str
    pid: int
    pid_start: str | None
    slurm_job: str | None
    acquired: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        age = max(0.0, (now or time.time()) - self.heartbeat)
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"{self.host} pid {self.pid}{job}, heartbeat {age:.0f} s ago"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeaseInfo:
        return cls(
            token=str(data["token"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            pid_start=data.get("pid_start"),
            slurm_job=data.get("slurm_job"),
            acquired=float(data["acquired"]),
            heartbeat=float(data["heartbeat"]),
        )


def read_lease(run_dir: Path) -> LeaseInfo | None:
    """The lease in `run_dir`, or None when there is none. An unreadable lease (hand-edited, or from a
    disk fault) reads as a holder nobody can be: heartbeat 0, so it is stale."""
    path = Path(run_dir) / LEASE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        text = ""
    try:
        return LeaseInfo.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return LeaseInfo("unreadable", "?", -1, None, None, 0.0, 0.0)


def slurm_job_gone(job: str) -> bool | None:
    """True when SLURM no longer lists `job`; None when SLURM cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        # "Invalid job id specified": finished long enough ago to be purged from the controller
        return "invalid job id" in out.stderr.lower() or None
    return not out.stdout.strip()


def stale_reason(info: LeaseInfo, *, now: float | None = None, queued_jobs: set[str] | None = None) -> str | None:
    """Why the lease's holder is gone, or None while it may still be training.

    `queued_jobs`: the job ids squeue lists now, when the caller has asked already (saves one squeue per lease).
    """
    now = time.time() if now is None else now
    if info.token == "unreadable":
        return "the lease file is unreadable"
    if info.host == socket.gethostname():
        start = pid_start_time(info.pid)
        if start is None and not _pid_alive(info.pid):
            return f"pid {info.pid} on this host is dead"
        if start is not None and info.pid_start is not None and start != info.pid_start:
            return f"pid {info.pid} on this host is now another process"
        return None  # alive on this host: held, however old its heartbeat (a stopped process resumes)
    if info.slurm_job is not None:
        if info.slurm_job == own_slurm_job():
            return f"SLURM job {info.slurm_job} is this job (requeued): its previous run is gone"
        gone = (info.slurm_job not in queued_jobs) if queued_jobs is not None else slurm_job_gone(info.slurm_job)
        if gone:
            return f"SLURM job {info.slurm_job} is no longer in the queue"
        if gone is False:
            return None
    age = now - info.heartbeat
    if age > stale_after_s():
        return f"heartbeat {age:.0f} s old (limit {stale_after_s():.0f} s)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_holder(run_dir: Path, queued_jobs: set[str] | None = None) -> LeaseInfo | None:
    """The lease's holder while it may still be training; None when there is no lease or it is stale."""
    info = read_lease(run_dir)
    if info is None or stale_reason(info, queued_jobs=queued_jobs) is not None:
        return None
    return info


class Lease:
    """The lease on one run folder, held by this process: `acquire`, then `release` (or `with`)."""

    def __init__(self, run_dir: Path, log: Any = None, heartbeat_s: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LEASE
        self.log = log or (lambda _line: None)
        self.heartbeat_s = heartbeat_interval_s() if heartbeat_s is None else heartbeat_s
        self.info: LeaseInfo | None = None
        self.lost: str | None = None  # why the lease is no longer ours (set once, never cleared)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_lock = threading.Lock()  # the thread's and `confirm`'s heartbeats share one temp file

    def _new_info(self) -> LeaseInfo:
        now = time.time()
        pid = os.getpid()
        return LeaseInfo(uuid.uuid4().hex, socket.gethostname(), pid, pid_start_time(pid), own_slurm_job(), now, now)

    def _write_tmp(self, info: LeaseInfo) -> Path:
        tmp = self.run_dir / f".{LEASE}.{info.token}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(asdict(info), fh)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:  # a full or read-only disk: named as lease.json, no temporary file left
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise OSError(err.errno, err.strerror, str(self.path)) from err if err.errno else err
        return tmp

    def _create(self, info: LeaseInfo) -> bool:
        """Atomically create lease.json holding `info`; False when a lease exists."""
        tmp = self._write_tmp(info)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> Lease:
        """Take the lease, taking over a stale one; RunFolderBusyError names a live holder."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # a lost race against another taker is retried a few times
            info = self._new_info()
            if self._create(info):
                self.info = info
                self._start_heartbeat()
                return self
            current = read_lease(self.run_dir)
            if current is None:
                continue  # released meanwhile
            reason = stale_reason(current)
            if reason is None:
                raise RunFolderBusyError(
                    f"{self.run_dir} is being trained by {current.describe()}; not starting a second trainer "
                    f"(a lease whose holder is gone is taken over automatically; see {LEASE})"
                )
            if self._take_over(current):
                self.log(f"lease: took over the stale lease of {current.describe()} ({reason})")
        raise RunFolderBusyError(f"{self.run_dir}: could not take its lease (other trainers keep racing for it)")

    def _take_over(self, stale: LeaseInfo) -> bool:
        """Move the stale lease aside; True when what moved was that lease (the caller then creates its own)."""
        return move_aside(self.run_dir, stale)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{self.run_dir.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.heartbeat_s) and not self.lost:
                self.heartbeat()
        except BaseException as err:  # whatever stops the thread: the lease fails safe
            self._lose(f"its heartbeat thread stopped ({type(err).__name__}: {err})")

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            with contextlib.suppress(OSError):
                self.log(f"lease: lost: {why}")

    def heartbeat(self) -> None:
        """Refresh the heartbeat if the lease is still ours; else, or when it cannot be written, mark the
        lease lost (for good: the trainer stops, and a rerun resumes from the last checkpoint)."""
        with self._beat_lock:
            if self.info is None or self.lost:
                return
            current = read_lease(self.run_dir)
            if current is None or current.token != self.info.token:
                taker = "nobody (lease.json is gone)" if current is None else current.describe()
                if current is not None and current.token == "unreadable":
                    taker = "nobody (lease.json became unreadable)"
                self._lose(f"the lease of {self.run_dir} was taken over by {taker}")
                return
            beat = time.time()
            tmp = self.run_dir / f".{LEASE}.{self.info.token}.tmp"
            try:
                self._write_tmp(LeaseInfo(**{**asdict(self.info), "heartbeat": beat}))
                os.replace(tmp, self.path)
            except OSError as err:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                self._lose(f"could not refresh the heartbeat in {self.path}: {err.strerror or err}")
                return
            self.info.heartbeat = beat

    def check(self) -> None:
        """Raise RunFolderBusyError when the lease is lost, its heartbeat thread died, or the heartbeat fell
        behind and cannot be refreshed now. Cheap (no I/O while the heartbeat keeps time): call every step."""
        if self.info is None:
            return
        if not self.lost and (self._thread is None or not self._thread.is_alive()):
            self._lose("its heartbeat thread stopped")
        if not self.lost and time.time() - self.info.heartbeat > 2.5 * self.heartbeat_s:
            self.heartbeat()  # the thread fell behind (a stalled process, a slow disk): beat here or stop
        if self.lost:
            raise LeaseLostError(
                f"{self.lost}; this trainer stops without writing more (a rerun resumes from the last checkpoint)"
            )

    def confirm(self) -> None:
        """Refresh the heartbeat now and raise (as `check`) unless the lease is still ours: call right
        before a write that a second trainer must never duplicate (checkpoint, metrics.json, DONE)."""
        if self.info is None:
            return
        self.heartbeat()
        self.check()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        current = read_lease(self.run_dir)
        if self.info is not None and current is not None and current.token == self.info.token:
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def move_aside(run_dir: Path, stale: LeaseInfo) -> bool:
    """Remove the lease judged stale (`stale`, as read); True when what was removed is that very lease.

    It is renamed aside first (one renamer wins) and re-checked: a lease that another trainer created
    meanwhile, or whose holder beat again since it was judged (alive after all), is put back."""
    path = Path(run_dir) / LEASE
    aside = Path(run_dir) / f".{LEASE}.stale-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # another taker moved it first
    moved = read_lease_file(aside)
    if moved is not None and (moved.token, moved.heartbeat) != (stale.token, stale.heartbeat):
        with contextlib.suppress(FileExistsError):  # unless yet another lease exists by now
            os.link(aside, path)
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


def read_lease_file(path: Path) -> LeaseInfo | None:
    try:
        return LeaseInfo.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
