"""Sweeps: one YAML file -> a grid of runs -> SLURM job arrays, local processes, or an in-process loop.

A sweep file::

    name: ablation
    output_dir: sweeps/ablation         # default sweeps/<name> (relative to the working directory)
    base: ../configs/inshop.yaml        # a config mapping, or a config YAML path relative to this file
    grid:                               # cartesian product: dotted config key -> list of values
      loss.name: [bdl, sbdl]            # shorthands: loss, sampler (-> .name), dataset (-> data.dataset)
      seed: [0, 1, 2]
    exclude:                            # drop every grid cell matching all keys of any rule
      - {loss.name: sbdl, seed: 2}
    include:                            # extra cells: base + these keys (never excluded)
      - {loss.name: multi-similarity, loss.params: {alpha: 2.0}}
    executor:                           # kind: slurm | local | inline; profile: slurm/profiles/NAME.yaml
      kind: slurm                       # or a bare NAME; other keys are submitit parameters that
      profile: gpu-example              # override the profile's (timeout_min, slurm_partition, ...)
      slurm_array_parallelism: 8

Outputs (``<output_dir>/``): ``sweep.yaml`` (the expanded sweep as submitted: base inline, executor
resolved), ``runs/<run_id>/`` (one run folder per cell, ``cell.json`` written before submission),
``jobs.json`` (run_id -> job id, rewritten atomically after each submission), ``submitit/%j/`` (logs).

Re-running a sweep is idempotent: cells with DONE are skipped, cells whose job is still pending or
running in SLURM are left alone, and everything else (failed, interrupted, cancelled, never submitted)
is submitted again and resumes from its checkpoint. Each cell's job is `CellJob`, a submitit
`Checkpointable`: on SLURM's timeout signal (USR2, `slurm_signal_delay_s` before the limit) or on a
preemption signal (USR1 or USR2) it requeues itself, and `train_run` resumes after the last epoch.

Execution kinds: ``slurm`` submits job arrays and returns; ``local`` runs each cell in its own
subprocess through submitit's LocalExecutor (``local_parallelism`` at a time) and waits; ``inline``
runs the cells one after the other in this process (debugging, tests, the quick start).

Modules, one job each: `spec` (the sweep file parsed and checked), `expand` (its cells), `job` (one cell
as a submitit job), `executor` (the submitit executor, cell.json and jobs.json, shared with `tune`), `slurm`
(squeue / sacct), `status` (each cell's state), `submit` (submission, the lock, cancelling). The `sweep`, `status` and `cancel` commands are `dmlbench.cli.sweep`, `.status` and `.cancel`.
"""

from __future__ import annotations

from dmlbench.sweep.expand import Cell, expand, iter_grid
from dmlbench.sweep.job import (
    DEFAULT_RUNNER,
    CellJob,
    PreemptOnce,
    preemption_safe_python,
    route_preemption_to_submitit,
    run_cell,
)
from dmlbench.sweep.spec import (
    EXECUTOR_KINDS,
    ExecutorSpec,
    Sweep,
    SweepError,
    load_sweep,
    sweep_from_dict,
)
from dmlbench.sweep.status import STATES, CellStatus, cell_statuses, format_status_table, sweep_status
from dmlbench.sweep.submit import SweepReport, cancel_sweep, run_sweep

__all__ = [
    "DEFAULT_RUNNER",
    "EXECUTOR_KINDS",
    "STATES",
    "Cell",
    "CellJob",
    "CellStatus",
    "ExecutorSpec",
    "PreemptOnce",
    "Sweep",
    "SweepError",
    "SweepReport",
    "route_preemption_to_submitit",
    "cancel_sweep",
    "cell_statuses",
    "expand",
    "format_status_table",
    "iter_grid",
    "load_sweep",
    "preemption_safe_python",
    "run_cell",
    "run_sweep",
    "sweep_from_dict",
    "sweep_status",
]
