"""The submitit side of a sweep, shared by `sweep.submit` and `tune.trials`: the executor built from the
sweep's executor section, each cell's `cell.json` written before submission, and jobs.json recording
each cell's job."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import submitit

from dmlbench import rundir
from dmlbench.sweep.expand import Cell
from dmlbench.sweep.job import preemption_safe_python
from dmlbench.sweep.spec import CONSTRUCTOR_KEYS, JOBS_FILE, OWN_EXECUTOR_KEYS, SUBMITIT_DIR, Sweep
from dmlbench.sweep.status import read_jobs


def write_cell_files(sweep: Sweep, cells: Sequence[Cell]) -> None:
    """`runs/<run_id>/cell.json` (sweep name and grid values) for each cell; an identical file is left alone."""
    for cell in cells:
        path = sweep.runs_dir / cell.run_id / rundir.CELL
        content = {"sweep": sweep.name, "grid": cell.grid}
        if path.is_file():
            with contextlib.suppress(ValueError):
                if rundir.read_json(path) == json.loads(json.dumps(content, default=str)):
                    continue
        rundir.atomic_write_json(path, content)


def record_jobs(out: Path, new: dict[str, str]) -> None:
    """Merge `new` (run_id -> job id) into `<out>/jobs.json`, atomically."""
    if new:
        rundir.atomic_write_json(out / JOBS_FILE, {**read_jobs(out), **new})


def make_executor(sweep: Sweep, cluster: str) -> submitit.AutoExecutor:
    """A submitit executor (`cluster` slurm | local) with the sweep's executor parameters; logs under
    `<output_dir>/submitit/%j/`."""
    params = {k: v for k, v in sweep.executor.params.items() if k not in OWN_EXECUTOR_KEYS}
    ctor = {k: params.pop(k) for k in CONSTRUCTOR_KEYS if k in params}
    if cluster == "slurm":
        ctor["slurm_python"] = preemption_safe_python(ctor.get("slurm_python"))
        if int(params.get("tasks_per_node", 1)) * int(params.get("nodes", 1)) > 1:
            # a data-parallel cell: when one process fails, srun stops the others (else they would wait
            # in their next collective until its timeout)
            params["slurm_srun_args"] = [*params.get("slurm_srun_args", []), "--kill-on-bad-exit=1"]
    executor = submitit.AutoExecutor(folder=sweep.output_dir / SUBMITIT_DIR / "%j", cluster=cluster, **ctor)
    executor.update_parameters(name=f"dmlbench-{sweep.name}", **params)
    return executor
