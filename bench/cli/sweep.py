"""`dmlbench sweep FILE`: expand a sweep and submit its unfinished cells (idempotent)."""

from __future__ import annotations

import argparse
import sys
import time

from dmlbench.errors import USAGE, SchedulerError
from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import EXECUTOR_KINDS, load_sweep
from dmlbench.sweep.status import (
    KEPT_STATES,
    cell_statuses,
    format_status_table,
    grouped_errors,
    scheduler_note,
    state_counts,
)
from dmlbench.sweep.submit import SweepReport, run_sweep
from dmlbench.validation.requirements import format_problems


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

    sweep = load_sweep(args.file, executor=args.executor, profile=args.profile)
    plugins = merge_plugins(sweep.base.get("plugins") or [], getattr(args, "plugin", []))
    if plugins:  # every cell's config lists them, so local and SLURM jobs import them too
        sweep.base["plugins"] = plugins
    started = time.monotonic()
    report = run_sweep(
        sweep,
        dry_run=args.dry_run,
        runner=args.runner,
        rerun_changed=args.rerun_changed,
        announce=lambda plan: _print_plan(plan, args),
    )
    actions = _actions(report, args, after=True)
    todo = sum(a not in ("skip", "NOT submitted") for a in actions.values())
    print(f"before: {state_counts(report.before)}; {'would submit' if args.dry_run else 'submitted'} {todo}")
    if args.dry_run:
        fatal = [p for p in report.requirements if p.fatal]
        if fatal:
            print(f"{len(fatal)} problem(s) above: fix them before submitting (the cells would fail the same way)")
        scheduler_problem(report, actions)
        return USAGE if fatal else 0
    if report.submitted and sweep.executor.kind == "slurm":
        arrays = sorted({j.split("_")[0] for j in report.submitted.values()})
        print(f"SLURM job array(s): {', '.join(arrays)}; follow with: dmlbench status {sweep.output_dir}")
    print(_final_summary(report, time.monotonic() - started))
    scheduler_problem(report, actions)
    return 1 if report.failed else 0


def scheduler_problem(report: SweepReport, actions: dict[str, str]) -> None:
    """SLURM unreachable or sbatch refused: one line after what the run folders show; an error (exit 1)
    when cells were left unsubmitted or unknown, else a warning."""
    if not report.problems:
        return
    problem = report.problems[-1]
    not_submitted = sum(a == "NOT submitted" for a in actions.values())
    unknown = any(s.state == "unknown" for s in report.before)
    if problem.startswith("sbatch"):
        line = problem
    elif unknown:
        line = scheduler_note(problem, report.before)
    else:
        line = f"cannot reach SLURM ({problem}): {not_submitted} cell(s) not submitted; rerun the sweep when it answers"
    if not_submitted or unknown:
        raise SchedulerError(line)
    print(f"dmlbench: warning: {line}", file=sys.stderr)


def _actions(report: SweepReport, args: argparse.Namespace, after: bool = False) -> dict[str, str]:
    """run_id -> what this command does with the cell (`after` it ran: cells SLURM did not take are
    `NOT submitted`)."""
    actions = {
        s.run_id: "skip" if s.state in KEPT_STATES else ("would submit" if args.dry_run else "submit")
        for s in report.before
    }
    for changed in report.changed:
        actions[changed.cell.run_id] = "would rerun (code changed)" if args.rerun_changed else "REFUSED (code changed)"
    if after and not args.dry_run:  # SLURM unreachable or sbatch refused: those cells were not submitted
        actions.update({rid: "NOT submitted" for rid, a in actions.items() if a == "submit" and rid not in report.submitted})
    return actions


def _print_plan(report: SweepReport, args: argparse.Namespace) -> None:
    """The cells and what this command does with each: printed before anything runs."""
    from dmlbench.sweep.describe import dropped_params_notes, format_loss_params

    sweep = report.sweep
    changed = report.changed
    actions = _actions(report, args)
    print(f"sweep '{sweep.name}': {len(report.cells)} cells -> {sweep.runs_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(report.before, actions))
    for note in dropped_params_notes(sweep, report.cells):
        print(f"note: {note}")
    if args.dry_run:
        print("resolved loss per cell (parameters the loss is built with; * = default):")
        print(format_loss_params(report.cells))
        if changed and not args.rerun_changed:
            print(f"{len(changed)} cell(s) ran with other plugin code: `sweep` will refuse; add --rerun-changed to rerun them")
        todo = sum(a != "skip" for a in actions.values())
        for line in format_problems(report.requirements, todo):
            print(line)
    sys.stdout.flush()


def _final_summary(report: SweepReport, elapsed_s: float) -> str:
    """The sweep's state after this command (not before it), its failures each once with their count."""
    sweep = report.sweep
    now = cell_statuses(sweep, report.cells)
    verb = "submitted" if sweep.executor.kind == "slurm" else "ran"
    lines = [f"sweep '{sweep.name}' now: {state_counts(now)} of {len(now)} cells (this command {verb} {len(report.submitted)} in {elapsed_s:.0f} s)"]
    errors = grouped_errors(now)
    if errors:
        lines += [f"  failed: {line}" for line in errors]
        lines.append(f"  (each failed cell's error.txt has its traceback; `dmlbench status {sweep.output_dir}` lists them)")
    return "\n".join(lines)
