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
    parser.add_argument(
        "new", type=Path, metavar="NEW", help="run folders (e.g. sweeps/my_grid), a collected folder or results.csv"
    )
    parser.add_argument(
        "baseline",
        type=Path,
        metavar="BASELINE",
        help="the same kinds: e.g. results/baseline (the committed collected baseline)",
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
        metavar="POINTS",
        help="difference too small to matter, in the tables' units (x100: 1 = one point of recall@1; default 0)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="compare only with the baseline cell whose --by value is NAME (e.g. bdl): no multiple-comparison "
        "correction; without it, a new cell meeting m baseline cells is tested at 5%%/m (Bonferroni)",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-cell comparison here")


def run(args: argparse.Namespace) -> int:
    from dmlbench.results.collect import load_frame, load_hits
    from dmlbench.results.compare import EXIT_WORSE, compare_frames, format_comparison
    from dmlbench.results.sources import resolve_source

    # a name such as results/baseline that is not a local path: the dmlbench checkout's (any working folder)
    args.new, args.baseline = resolve_source(args.new), resolve_source(args.baseline)
    try:
        new, base = load_frame(args.new), load_frame(args.baseline)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err  # exit 2 = compare.EXIT_NO_MATCH
    if args.min_diff < 0:
        raise UsageError(f"--min-diff must be >= 0 (points, x100), got {args.min_diff:g}")
    result = compare_frames(
        new,
        base,
        metric=args.metric,
        layer=args.layer,
        by=args.by,
        min_diff=args.min_diff / 100,
        hits_new=load_hits(args.new, new),
        hits_base=load_hits(args.baseline, base),
        reference=args.reference,
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
