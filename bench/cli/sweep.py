"""`dmlbench sweep`, `dmlbench status` and `dmlbench cancel`: their parsers and what they print."""

from __future__ import annotations

import argparse
import json
import sys

from dmlbench.config import ConfigError
from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import EXECUTOR_KINDS, SweepError, load_sweep
from dmlbench.sweep.status import format_status_table, state_counts, sweep_status
from dmlbench.sweep.submit import cancel_sweep, run_sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.file, executor=args.executor, profile=args.profile)
        report = run_sweep(sweep, dry_run=args.dry_run, runner=args.runner)
    except (SweepError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    actions = {
        s.run_id: "skip" if s.state in ("done", "running", "pending") else ("would submit" if args.dry_run else "submit")
        for s in report.before
    }
    print(f"sweep '{sweep.name}': {len(report.cells)} cells -> {sweep.runs_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(report.before, actions))
    todo = sum(a != "skip" for a in actions.values())
    print(f"before: {state_counts(report.before)}; {'would submit' if args.dry_run else 'submitted'} {todo}")
    if report.submitted and sweep.executor.kind == "slurm":
        arrays = sorted({j.split("_")[0] for j in report.submitted.values()})
        print(f"SLURM job array(s): {', '.join(arrays)}; follow with: dmlbench status {sweep.output_dir}")
    if report.failed:
        print(f"{len(report.failed)} cell(s) failed: {', '.join(report.failed)} (see error.txt in their folders)")
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        sweep, statuses = sweep_status(args.sweep)
    except (SweepError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=1, default=str))
        return 0
    print(f"sweep '{sweep.name}' in {sweep.output_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(statuses))
    print(state_counts(statuses))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        cancelled = cancel_sweep(args.sweep)
    except (SweepError, ConfigError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"cancelled {len(cancelled)} job(s)" + (f": {' '.join(cancelled)}" if cancelled else ""))
    return 0


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="expand a sweep file and submit its unfinished cells (idempotent)")
    p.add_argument("file", help="sweep YAML (base + grid + include/exclude + executor)")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, help="override the file's executor kind")
    p.add_argument("--profile", help="executor profile YAML (e.g. slurm/profiles/local.yaml) or its bare name")
    p.add_argument("--dry-run", action="store_true", help="show what would run and what is done; submit nothing")
    p.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests: a stand-in trainer
    p.set_defaults(func=cmd_sweep)


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="done / running / pending / failed / cancelled per cell of a sweep")
    p.add_argument("sweep", help="the sweep file or its output folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


def add_cancel_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel a sweep's queued and running SLURM jobs")
    p.add_argument("sweep", help="the sweep file or its output folder")
    p.set_defaults(func=cmd_cancel)
