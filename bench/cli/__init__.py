"""The `dmlbench` command line: a thin layer over the modules that do the work."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dmlbench.registry import import_plugins

# Every subcommand: name -> (module, function adding its parser, one-line help). Only the module of the
# command being run is imported, so `dmlbench status` does not pay for importing torch.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "quickstart": ("dmlbench.cli.quickstart", "add_quickstart_parser", "generate synthshop and run the quick-start sweep on CPU"),
    "train": ("dmlbench.cli", "add_train_parser", "train and evaluate one run (resumes automatically)"),
    "list": ("dmlbench.cli", "add_list_parser", "list losses, samplers, datasets, backbones, sweep presets + parameters"),
    "sweep": ("dmlbench.cli.sweep", "add_sweep_parser", "expand a sweep file and submit its unfinished cells (idempotent)"),
    "status": ("dmlbench.cli.sweep", "add_status_parser", "done / running / pending / failed / cancelled per cell of a sweep"),
    "cancel": ("dmlbench.cli.sweep", "add_cancel_parser", "cancel a sweep's queued and running SLURM jobs"),
    "collect": ("dmlbench.results.report", "add_collect_parser", "collect finished runs into a long table, tables and plots"),
    "compare": ("dmlbench.results.compare", "add_compare_parser", "compare two result sets cell by cell (exit 1 if worse)"),
    "plot": ("dmlbench.results.plots", "add_plot_parser", "draw recall curves, alpha/beta heatmaps, training curves, embeddings"),
    "time-losses": ("dmlbench.perf.time_losses", "add_time_losses_parser", "time loss forward+backward against the GEMM floor"),
    "bench-eval": ("dmlbench.perf.bench_eval", "add_bench_eval_parser", "time exact retrieval metrics against the GEMM floor"),
    "bench-train": ("dmlbench.perf.bench_train", "add_bench_train_parser", "training images/s: input pipeline vs pre-loaded tensors"),
}
DATA_COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("dmlbench.cli.data", "add_data_synth_parser", "render the synthshop dataset (In-Shop format)"),
    "check": ("dmlbench.cli.data", "add_data_check_parser", "validate a dataset folder and count its splits"),
}


def _add_command(sub: argparse._SubParsersAction, name: str, spec: tuple[str, str, str], load: bool) -> None:
    module, adder, help_text = spec
    if load:
        getattr(importlib.import_module(module), adder)(sub)
    else:  # listed in --help; its options are only built when the command is run
        sub.add_parser(name, help=help_text)


def selected_commands(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(command, data sub-command) named on the command line, skipping global options."""
    words: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg == "--plugin":
            skip_next = True
            continue
        if arg.startswith("-"):
            continue
        words.append(arg)
        if len(words) == 2:
            break
    command = words[0] if words else None
    return command, (words[1] if command == "data" and len(words) > 1 else None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser of the command named in `argv` (every command's parser when argv is None)."""
    command, data_command = selected_commands(argv) if argv is not None else (None, None)
    load_all = argv is None
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
    for name, spec in COMMANDS.items():
        _add_command(sub, name, spec, load_all or name == command)
    data = sub.add_parser("data", help="generate (synth) or check datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True
    for name, spec in DATA_COMMANDS.items():
        _add_command(data_sub, name, spec, load_all or (command == "data" and name == data_command))
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

    from dmlbench.config import load_config, run_id
    from dmlbench.rundir import is_done
    from dmlbench.train import train_run

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
    from dmlbench.cli.listing import describe_registries

    print(describe_registries(args.what))
    return 0


def plugin_modules(argv: Sequence[str]) -> list[str]:
    """Values of every `--plugin MODULE` / `--plugin=MODULE` before the command."""
    modules = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            modules.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            modules.append(arg.split("=", 1)[1])
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from dmlbench.config import ConfigError
    from dmlbench.data.base import DatasetError

    try:
        # Plugins first: their losses must be known when a command builds its options.
        import_plugins(plugin_modules(argv))
        parser = build_parser(argv)
        args, extra = parser.parse_known_args(argv)
        # `train cfg.yaml --quiet key=value`: argparse stops filling `overrides` at the first option.
        if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.func(args) or 0)
    except (ConfigError, DatasetError, ImportError) as err:
        # Problems the user must fix: one clear line, no traceback.
        print(f"dmlbench: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # dmlbench.train.NonFiniteLossError: the run stopped, nothing garbage written
        print(f"dmlbench: run stopped: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        from dmlbench.model import WeightsMissingError

        if not isinstance(err, WeightsMissingError):
            raise
        print(f"dmlbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
