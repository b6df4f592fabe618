"""`dmlbench sweep FILE`: expand a sweep and submit its unfinished cells (idempotent)."""

from __future__ import annotations

import argparse

from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import EXECUTOR_KINDS, load_sweep
from dmlbench.sweep.status import format_status_table, state_counts
from dmlbench.sweep.submit import run_sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="sweep YAML (base + grid + include/exclude + executor), or a preset name")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, help="override the file's executor kind")
    p.add_argument("--profile", help="executor profile YAML (e.g. slurm/profiles/local.yaml) or its bare name")
    p.add_argument("--dry-run", action="store_true", help="show what would run and what is done; submit nothing")
    p.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests: a stand-in trainer


def run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.file, executor=args.executor, profile=args.profile)
    report = run_sweep(sweep, dry_run=args.dry_run, runner=args.runner)
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
