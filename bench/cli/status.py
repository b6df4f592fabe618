"""`dmlbench status SWEEP`: done / running / pending / failed / cancelled per cell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dmlbench.errors import STOPPED
from dmlbench.sweep.status import format_status_table, scheduler_note, state_counts, sweep_status


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="the sweep file or its output folder, or a tune folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from dmlbench.tune import is_tune_dir, require_optuna

    if is_tune_dir(args.sweep):  # a tune folder: trials per method, then its final stage
        require_optuna()
        from dmlbench.tune.report import tune_status, tune_status_data

        folder = Path(args.sweep)
        print(json.dumps(tune_status_data(folder), indent=1, default=str) if args.json else tune_status(folder))
        return 0
    problems: list[str] = []
    sweep, statuses = sweep_status(args.sweep, problems)
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=1, default=str))
    else:
        print(f"sweep '{sweep.name}' in {sweep.output_dir} (executor: {sweep.executor.kind})")
        print(format_status_table(statuses))
        print(state_counts(statuses))
    for problem in problems:  # SLURM unreachable: one line; exit 1 when a cell's state is therefore unknown
        print(f"dmlbench: warning: {scheduler_note(problem, statuses)}", file=sys.stderr)
    return STOPPED if any(s.state == "unknown" for s in statuses) else 0
