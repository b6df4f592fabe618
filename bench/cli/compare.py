"""`dmlbench compare NEW [BASELINE]`: the gate's verdict per new cell; exit 1 when one is significantly worse."""

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
        "new",
        type=Path,
        metavar="NEW",
        help="run folders (e.g. sweeps/my_grid), a collected folder or results.csv",
    )
    parser.add_argument(
        "baseline", type=Path, nargs="?", default=None, metavar="BASELINE",
        help="the same kinds, e.g. results/baseline (the committed baseline: another environment); "
        "omitted: NEW holds the reference runs too (--by KEY --reference NAME)",
    )  # fmt: skip
    parser.add_argument(
        "--metric",
        default="recall@1",
        help="the primary metric: recall@1, precision@10, map@r (default recall@1)",
    )
    parser.add_argument("--layer", default="emb", help="the primary layer: emb | fc | conv (default emb)")
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY",
        help="config key that differs, e.g. loss.name (repeatable)",
    )
    parser.add_argument(
        "--reference", default=None, metavar="NAME",
        help="the one baseline cell (by its --by value, e.g. multi-similarity) each new cell is tested against; "
        "default: the best baseline cell on the primary metric",
    )  # fmt: skip
    parser.add_argument(
        "--min-diff", type=float, default=0.0, metavar="POINTS",
        help="the margin, in the tables' units (x100: 1 = one point of recall@1): worse means worse by more than it; "
        "it enters the MDE (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--allow", action="append", default=[], metavar="KEY",
        help="compare although KEY differs (e.g. data.root, train.epochs, num_queries): refused otherwise (repeatable)",
    )  # fmt: skip
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-cell comparison here")


def run(args: argparse.Namespace) -> int:
    from dmlbench.results.collect import load_frame, load_hits
    from dmlbench.results.compare import EXIT_WORSE, compare_frames, split_one_folder
    from dmlbench.results.compare_report import format_comparison
    from dmlbench.results.sources import resolve_source

    # a name such as results/baseline that is not a local path: the dmlbench checkout's (any working folder)
    args.new = resolve_source(args.new)
    args.baseline = resolve_source(args.baseline) if args.baseline is not None else None
    if args.min_diff < 0:
        raise UsageError(f"--min-diff must be >= 0 (points, x100), got {args.min_diff:g}")
    try:
        new = load_frame(args.new)
        base = load_frame(args.baseline) if args.baseline is not None else None
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err  # exit 2 = compare.EXIT_NO_MATCH
    hits_new = load_hits(args.new, new)
    if base is None:
        new, base = split_one_folder(new, args.by, args.reference)
        hits_base = hits_new
    else:
        hits_base = load_hits(args.baseline, base)
    result = compare_frames(
        new, base, metric=args.metric, layer=args.layer, by=args.by, min_diff=args.min_diff / 100,
        hits_new=hits_new, hits_base=hits_base, reference=args.reference, allow=args.allow,
    )  # fmt: skip
    print(format_comparison(result))
    if args.csv is not None:
        result.cells.to_csv(args.csv, index=False)
    code = result.exit_code()
    if code == EXIT_WORSE:
        print(f"\nregression: {int((result.gate['verdict'] == 'worse').sum())} new cell(s) significantly worse "
              "than their reference", file=sys.stderr)  # fmt: skip
    return code
