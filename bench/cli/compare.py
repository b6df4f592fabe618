"""`dmlbench compare NEW BASELINE`: per-cell verdicts; exit 1 when any cell is significantly worse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmlbench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmlbench.results import compare

    parser.description = compare.__doc__.split("\n\n>>>")[0] if compare.__doc__ else None
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("new", type=Path, metavar="NEW", help="results folder or results.csv/.parquet")
    parser.add_argument(
        "baseline", type=Path, metavar="BASELINE", help="results folder or results.csv/.parquet"
    )
    parser.add_argument(
        "--metric", default="recall@1", help="e.g. recall@1, precision@10, map@r (default recall@1)"
    )
    parser.add_argument("--layer", default="emb", help="emb | fc | conv (default emb)")
    parser.add_argument(
        "--by", action="append", default=[], metavar="KEY", help="config key that differs (repeatable)"
    )
    parser.add_argument(
        "--min-diff",
        type=float,
        default=0.0,
        help="difference (as a fraction) too small to matter (default 0)",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-cell comparison here")


def run(args: argparse.Namespace) -> int:
    from dmlbench.results.collect import load_frame
    from dmlbench.results.compare import EXIT_WORSE, compare_frames, format_comparison

    try:
        new, base = load_frame(args.new), load_frame(args.baseline)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err  # exit 2 = compare.EXIT_NO_MATCH
    result = compare_frames(
        new, base, metric=args.metric, layer=args.layer, by=args.by, min_diff=args.min_diff
    )
    print(format_comparison(result))
    if args.csv is not None:
        result.cells.to_csv(args.csv, index=False)
    code = result.exit_code()
    if code == EXIT_WORSE:
        print(
            f"\nregression: {int((result.cells['verdict'] == 'worse').sum())} cell(s) significantly worse",
            file=sys.stderr,
        )
    return code
