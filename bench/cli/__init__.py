"""The `dmlbench` command line: one parser, one table of commands, one exception -> exit-code rule.

A command is a module in COMMANDS (or DATA_COMMANDS) with two functions:
`add_arguments(parser: argparse.ArgumentParser) -> None` adds its arguments to the sub-parser built here
with the table's help text (the one place help is written), and `run(args: argparse.Namespace) -> int`
does the work and returns the exit code. A problem the user must fix is raised as a
`dmlbench.errors.DmlbenchError` subclass; `main` prints it as one line and exits with its `exit_code`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dmlbench.errors import DmlbenchError
from dmlbench.registry import import_plugins

# (module with add_arguments/run, one-line help)
CommandSpec = tuple[str, str]

# Every subcommand: name -> (module, one-line help). Only the module of the command being run is
# imported, so `dmlbench status` does not pay for importing torch.
COMMANDS: dict[str, CommandSpec] = {
    "quickstart": ("dmlbench.cli.quickstart", "generate synthshop and run the quick-start sweep on CPU"),
    "train": ("dmlbench.cli.train", "train and evaluate one run (resumes automatically)"),
    "list": ("dmlbench.cli.listing", "list losses, samplers, datasets, backbones, sweep presets + parameters"),
    "sweep": ("dmlbench.cli.sweep", "expand a sweep file and submit its unfinished cells (idempotent)"),
    "tune": ("dmlbench.cli.tune", "equal-budget tuning per method on validation folds, then S seeds on test"),
    "status": ("dmlbench.cli.status", "done / running / pending / failed / cancelled per cell of a sweep"),
    "cancel": ("dmlbench.cli.cancel", "cancel a sweep's queued and running SLURM jobs"),
    "collect": ("dmlbench.cli.collect", "collect finished runs into a long table, tables and plots"),
    "compare": ("dmlbench.cli.compare", "compare two result sets cell by cell (exit 1 if worse)"),
    "calibrate": ("dmlbench.cli.calibrate", "A/A and planted-effect calibration of compare on a regression preset"),
    "plot": ("dmlbench.cli.plot", "draw recall curves, alpha/beta heatmaps, training curves, embeddings"),
    "time-losses": ("dmlbench.cli.time_losses", "time loss forward+backward against the GEMM floor"),
    "bench-eval": ("dmlbench.cli.bench_eval", "time exact retrieval metrics against the GEMM floor"),
    "bench-train": ("dmlbench.cli.bench_train", "training images/s: input pipeline vs pre-loaded tensors"),
    "weights": ("dmlbench.cli.weights", "fetch backbone weights into the caches runs read (needs internet)"),
}
DATA_COMMANDS: dict[str, CommandSpec] = {
    "synth": ("dmlbench.cli.data_synth", "render the synthshop dataset (In-Shop format)"),
    "check": ("dmlbench.cli.data_check", "validate a dataset folder and count its splits"),
}


def _add_command(sub: argparse._SubParsersAction, name: str, spec: CommandSpec, load: bool) -> None:
    module_name, help_text = spec
    parser = sub.add_parser(name, help=help_text, description=help_text)
    if load:  # otherwise only listed in --help; its options are built when the command is run
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)


def plugin_option_parser() -> argparse.ArgumentParser:
    """The global `--plugin MODULE` option: the one definition, read before the command's parser is built."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first so its @register losses/samplers/datasets can be used (repeatable)",
    )
    return parser


def selected_commands(args: Sequence[str]) -> tuple[str | None, str | None]:
    """(command, data sub-command) named in `args` (the command line with the global options removed)."""
    words = [arg for arg in args if not arg.startswith("-")][:2]
    command = words[0] if words else None
    return command, (words[1] if command == "data" and len(words) > 1 else None)


def build_parser(selected: tuple[str | None, str | None] | None = None) -> argparse.ArgumentParser:
    """The parser with the options of the `selected` (command, data sub-command); of every command when None."""
    command, data_command = selected or (None, None)
    load_all = selected is None
    parser = argparse.ArgumentParser(
        prog="dmlbench",
        description="Benchmark and ablation harness for deep metric learning in image retrieval.",
        parents=[plugin_option_parser()],
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


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """A command line without the global `--plugin` options, parsed; argparse exits 2 on a usage error."""
    parser = build_parser(selected_commands(argv))
    args, extra = parser.parse_known_args(argv)
    # `train cfg.yaml --quiet key=value`: argparse stops filling `overrides` at the first option.
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error the user can act on is one line on stderr and the error's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Plugins first: their losses must be known when a command builds its options.
        # `--plugin` is global but may stand anywhere (also after the command): read it here, once.
        plugins, rest = plugin_option_parser().parse_known_args(argv)
        import_plugins(plugins.plugin)
        args = parse_command(rest)
        args.plugin = plugins.plugin
        return int(args.func(args) or 0)
    except DmlbenchError as err:
        print(f"dmlbench: {err.label}: {err}", file=sys.stderr)
        return err.exit_code
    except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        # a path the user gave that cannot be used, met deeper than the command's own checks
        where = f": {err.filename}" if err.filename else ""
        print(f"dmlbench: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
