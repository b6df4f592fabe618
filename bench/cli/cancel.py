"""`dmlbench cancel SWEEP`: cancel a sweep's queued and running SLURM jobs."""

from __future__ import annotations

import argparse

from dmlbench.sweep.submit import cancel_sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="the sweep file or its output folder")


def run(args: argparse.Namespace) -> int:
    cancelled = cancel_sweep(args.sweep)
    print(f"cancelled {len(cancelled)} job(s)" + (f": {' '.join(cancelled)}" if cancelled else ""))
    return 0
