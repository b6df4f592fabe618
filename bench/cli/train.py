"""`dmlbench train CONFIG [KEY=VALUE ...]`: train and evaluate one run into its folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config YAML (see `dmlbench list` for names and parameters)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=3 loss=sbdl loss.params.alpha=3"
    )
    parser.add_argument("--run-dir", help="run folder (default: <output_dir>/<run_id>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from dmlbench.config import load_config, run_id
    from dmlbench.plugins import merge_plugins
    from dmlbench.rundir import is_done

    cfg = load_config(args.config, args.overrides)  # every key and enumerated value checked: before torch loads
    cfg.plugins = merge_plugins(cfg.plugins, args.plugin)  # recorded in config.yaml: reruns import them too
    from dmlbench.train import train_run

    run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.output_dir) / run_id(cfg)
    finished = is_done(run_dir)
    result = train_run(cfg, run_dir, progress=not args.quiet)  # a finished run of other code: refused here
    if finished:
        print(f"{run_dir} is already finished; nothing to do (results are never overwritten)")
    if "layers" not in result:  # a data-parallel process other than 0: process 0 evaluates and reports
        return 0
    print(format_metrics(result))
    print(f"run folder: {run_dir}")
    return 0


def format_metrics(result: dict[str, Any]) -> str:
    """A small per-layer table of one run's metrics."""
    from tabulate import tabulate

    layers = result["layers"]
    keys = [k for k in next(iter(layers.values())) if "@" in k or k in ("r_precision", "map@r")]
    rows = [[layer] + [f"{100 * m[k]:.1f}" for k in keys] for layer, m in layers.items()]
    return tabulate(rows, headers=["layer"] + keys, tablefmt="github")
