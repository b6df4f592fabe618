"""`dmlbench sweep FILE`: expand a sweep and submit its unfinished cells (idempotent)."""

from __future__ import annotations

import argparse
import sys

from dmlbench.errors import SchedulerError
from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import EXECUTOR_KINDS, load_sweep
from dmlbench.sweep.status import KEPT_STATES, format_status_table, scheduler_note, state_counts
from dmlbench.sweep.submit import run_sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="sweep YAML (base + grid + include/exclude + executor), or a preset name")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, help="override the file's executor kind")
    p.add_argument("--profile", help="executor profile YAML (e.g. slurm/profiles/local.yaml) or its bare name")
    p.add_argument("--dry-run", action="store_true", help="show what would run and what is done; submit nothing")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="rerun cells whose plugin code changed since they ran (old folders move to <output_dir>/replaced/)",
    )
    p.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests: a stand-in trainer


def run(args: argparse.Namespace) -> int:
    from dmlbench.plugins import merge_plugins
    from dmlbench.sweep.describe import dropped_params_notes, format_loss_params

    sweep = load_sweep(args.file, executor=args.executor, profile=args.profile)
    plugins = merge_plugins(sweep.base.get("plugins") or [], getattr(args, "plugin", []))
    if plugins:  # every cell's config lists them, so local and SLURM jobs import them too
        sweep.base["plugins"] = plugins
    report = run_sweep(sweep, dry_run=args.dry_run, runner=args.runner, rerun_changed=args.rerun_changed)
    changed = {c.cell.run_id: c.change for c in report.changed}
    actions = {
        s.run_id: "skip" if s.state in KEPT_STATES else ("would submit" if args.dry_run else "submit")
        for s in report.before
    }
    for run_id in changed:
        actions[run_id] = "would rerun (code changed)" if args.rerun_changed else "REFUSED (code changed)"
    if not args.dry_run:  # SLURM unreachable or sbatch refused: those cells were not submitted
        actions.update({rid: "NOT submitted" for rid, a in actions.items() if a == "submit" and rid not in report.submitted})
    print(f"sweep '{sweep.name}': {len(report.cells)} cells -> {sweep.runs_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(report.before, actions))
    for note in dropped_params_notes(sweep, report.cells):
        print(f"note: {note}")
    if args.dry_run:
        print("resolved loss per cell (parameters the loss is built with; * = default):")
        print(format_loss_params(report.cells))
        if changed and not args.rerun_changed:
            print(f"{len(changed)} cell(s) ran with other plugin code: `sweep` will refuse; add --rerun-changed to rerun them")
    todo = sum(a != "skip" and a != "NOT submitted" for a in actions.values())
    print(f"before: {state_counts(report.before)}; {'would submit' if args.dry_run else 'submitted'} {todo}")
    if report.submitted and sweep.executor.kind == "slurm":
        arrays = sorted({j.split("_")[0] for j in report.submitted.values()})
        print(f"SLURM job array(s): {', '.join(arrays)}; follow with: dmlbench status {sweep.output_dir}")
    if report.failed:
        print(f"{len(report.failed)} cell(s) failed: {', '.join(report.failed)} (see error.txt in their folders)")
    if report.problems:  # SLURM unreachable or sbatch refused: one line, after what the run folders show
        problem = report.problems[-1]
        not_submitted = sum(a == "NOT submitted" for a in actions.values())
        if problem.startswith("sbatch"):
            line = problem
        elif any(s.state == "unknown" for s in report.before):
            line = scheduler_note(problem, report.before)
        else:
            line = f"cannot reach SLURM ({problem}): {not_submitted} cell(s) not submitted; rerun the sweep when it answers"
        if not_submitted or any(s.state == "unknown" for s in report.before):
            raise SchedulerError(line)
        print(f"dmlbench: warning: {line}", file=sys.stderr)
    return 1 if report.failed else 0
