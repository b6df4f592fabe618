"""One sweep cell as a submitit job: `CellJob` (a `Checkpointable` that requeues itself on SLURM's
timeout or preemption signal), `run_cell` (the run folder's error.txt on failure), the runner lookup,
and the preemption-signal guards (`PreemptOnce`, `preemption_safe_python`).

Jobs queued before this module existed were pickled under an older path of `CellJob`; they must be
resubmitted (`dmlbench sweep` again; finished cells are kept)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from dmlbench import rundir
from dmlbench.config import config_from_dict
from dmlbench.rundir.lease import RunFolderBusyError

DEFAULT_RUNNER = "dmlbench.train:train_run"


def resolve_runner(spec: str) -> Callable[..., dict[str, Any]]:
    """'package.module:function' -> the function (imported in the job's own process)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"runner must look like 'package.module:function', got '{spec}'")
    return getattr(importlib.import_module(module), attr)


def exception_summary(err: BaseException) -> str:
    """One line for `status`: the exception type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_cell(config_data: dict[str, Any], run_dir: str | Path, runner: str = DEFAULT_RUNNER) -> dict[str, Any]:
    """Run one cell into its folder. A finished folder is never touched; a failure leaves error.txt
    (first line: the error, then the traceback) and re-raises, so the scheduler also records it."""
    run_dir = Path(run_dir)
    if rundir.is_done(run_dir):
        return {"run_id": run_dir.name, "skipped": "already done"}
    run_dir.mkdir(parents=True, exist_ok=True)
    job = os.environ.get("SLURM_JOB_ID")
    writes = os.environ.get("SLURM_PROCID", "0") == "0"  # a data-parallel cell's tasks: task 0 writes the folder
    if job and writes:
        task = os.environ.get("SLURM_ARRAY_JOB_ID", job) + "_" + os.environ.get("SLURM_ARRAY_TASK_ID", "")
        rundir.append_log(run_dir, f"sweep: SLURM job {task.rstrip('_')} starting (restart {os.environ.get('SLURM_RESTART_COUNT', '0')})")
    try:
        cfg = config_from_dict(config_data)
        result = resolve_runner(runner)(cfg, run_dir, progress=False)
    except RunFolderBusyError as err:
        # another sweep (or `train`) is training this cell: not a failure of the cell, and not ours to record
        rundir.append_log(run_dir, f"sweep: not started: {err}")
        return {"run_id": run_dir.name, "skipped": str(err)}
    except Exception as err:
        if writes:
            rundir.atomic_write_text(run_dir / rundir.ERROR, exception_summary(err) + "\n\n" + traceback.format_exc())
        raise
    if writes:
        (run_dir / rundir.ERROR).unlink(missing_ok=True)  # an earlier attempt's error no longer applies
    return result


PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class PreemptOnce:
    """Runs submitit's checkpoint-and-requeue handler once, in the job's own process.

    A preemption signal reaches the task's whole process group, more than once: slurmstepd signals
    the task and its group, and `scancel --signal` retries for about a minute while SLURM answers
    "Job can not be altered now", delivering the signal on every try. Without this guard, forked
    DataLoader workers (which inherit the handler) would requeue the job and exit, a second call
    would checkpoint and requeue twice, and a repeat would kill `scontrol requeue` itself."""

    def __init__(self, handler: Callable[[int, Any], None]) -> None:
        self.handler = handler
        self.pid = os.getpid()
        self.fired = False

    def __call__(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:  # a forked DataLoader worker: the job's main process handles it
            return
        if self.fired:
            print(f"dmlbench: {signal.Signals(signum).name} again: already checkpointing and requeueing", file=sys.stderr)
            return
        self.fired = True
        for sig in PREEMPTION_SIGNALS:  # ignored from now on, also by `scontrol requeue` (SIG_IGN survives exec)
            signal.signal(sig, signal.SIG_IGN)
        self.handler(signum, frame)


def route_preemption_to_submitit() -> None:
    """Inside a submitit job, make SIGUSR1 do what submitit's preemption signal (USR2) does:
    checkpoint and requeue, once per job. Clusters and operators use either signal."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        handler = signal.getsignal(signal.SIGUSR2)
        if type(getattr(handler, "__self__", None)).__name__ == "SignalHandler":
            once = PreemptOnce(handler)  # type: ignore[arg-type]
            for sig in PREEMPTION_SIGNALS:
                signal.signal(sig, once)


class CellJob(Checkpointable):
    """One sweep cell as a submitit job. All state lives in the run folder (checkpoint.pt is written
    every epoch), so checkpointing only has to resubmit the same call: the resumed job calls the
    runner again, which resumes after the last completed epoch."""

    def __init__(self, runner: str = DEFAULT_RUNNER) -> None:
        self.runner = runner

    def __call__(self, config_data: dict[str, Any], run_dir: str) -> dict[str, Any]:
        route_preemption_to_submitit()
        return run_cell(config_data, run_dir, self.runner)

    def checkpoint(self, config_data: dict[str, Any], run_dir: str) -> DelayedSubmission:
        with contextlib.suppress(OSError):
            rundir.append_log(Path(run_dir), "sweep: preempted or out of time; requeueing (resumes from the last checkpoint)")
        return DelayedSubmission(self, config_data, run_dir)


def preemption_safe_python(python: str | None = None) -> str:
    """The command that starts a SLURM cell's Python (submitit's `python`), launched with USR1 and USR2
    ignored. Until submitit has installed its handler, a preemption signal would kill Python at
    startup (their default action), e.g. one of scancel's retries reaching a just-requeued cell;
    ignored instead, the cell starts normally and submitit's handler then replaces SIG_IGN.

    >>> print(preemption_safe_python("venv/bin/python"))
    /bin/sh -c 'trap "" USR1 USR2; exec "$0" "$@"' venv/bin/python
    """
    return "/bin/sh -c 'trap \"\" USR1 USR2; exec \"$0\" \"$@\"' " + (python or shlex.quote(sys.executable))
