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

    # Each module registers its own subcommands (one line each).
    # -- subcommands: begin --
    # -- subcommands: end --
    del data_sub
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    import_plugins(args.plugin)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
