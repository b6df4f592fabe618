"""The `dmlbench` command line: a thin layer over the modules that do the work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.registry import import_plugins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmlbench",
        description="Benchmark and ablation harness for deep metric learning in image retrieval.",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first so its @register losses/samplers/datasets can be used (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="generate or check datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True

    add_train_parser(sub)
    add_list_parser(sub)
    from bench.bench_train import add_bench_train_parser

    add_bench_train_parser(sub)
    # Each module registers its own subcommands (one line each).
    # -- subcommands: begin --
    from bench.datasets.synthshop import add_data_synth_parser

    add_data_synth_parser(data_sub)
    from bench.datasets.check import add_data_check_parser

    add_data_check_parser(data_sub)
    from bench.sweep import add_cancel_parser, add_status_parser, add_sweep_parser

    add_sweep_parser(sub), add_status_parser(sub), add_cancel_parser(sub)
    from bench.compare import add_compare_parser
    from bench.plots import add_plot_parser
    from bench.report import add_collect_parser

    add_collect_parser(sub), add_compare_parser(sub), add_plot_parser(sub)
    from bench.bench_eval import add_bench_eval_parser

    add_bench_eval_parser(sub)
    from bench.timing import add_time_losses_parser

    add_time_losses_parser(sub)
    # -- subcommands: end --
    del data_sub
    return parser


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train and evaluate one run (resumes automatically)")
    p.add_argument("config", help="config YAML (see `dmlbench list` for names and parameters)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=3 loss=sbdl loss.params.alpha=3")
    p.add_argument("--run-dir", help="run folder (default: <output_dir>/<run_id>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.config import load_config, run_id
    from bench.rundir import is_done
    from bench.train import train_run

    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.output_dir) / run_id(cfg)
    if is_done(run_dir):
        print(f"{run_dir} is already finished; nothing to do (results are never overwritten)")
    result = train_run(cfg, run_dir, progress=not args.quiet)
    print(format_metrics(result))
    print(f"run folder: {run_dir}")
    return 0


def format_metrics(result: dict) -> str:
    """A small per-layer table of one run's metrics."""
    from tabulate import tabulate

    layers = result["layers"]
    keys = [k for k in next(iter(layers.values())) if "@" in k or k in ("r_precision", "map@r")]
    rows = [[layer] + [f"{100 * m[k]:.1f}" for k in keys] for layer, m in layers.items()]
    return tabulate(rows, headers=["layer"] + keys, tablefmt="github")


def add_list_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list losses, samplers, datasets, backbones (and sweeps) with parameters")
    p.add_argument("what", nargs="?", choices=["losses", "samplers", "datasets", "backbones", "sweeps"])
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.listing import describe_registries

    print(describe_registries(args.what))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from bench.config import ConfigError
    from bench.datasets import DatasetError
    from bench.models import WeightsMissingError

    try:
        import_plugins(args.plugin)
        return int(args.func(args) or 0)
    except (ConfigError, DatasetError, WeightsMissingError, ImportError) as err:
        # Problems the user must fix: one clear line, no traceback.
        print(f"dmlbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
