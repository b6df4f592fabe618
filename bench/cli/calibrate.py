"""`dmlbench calibrate [PRESET]`: A/A and planted-effect rates of `compare`'s verdicts on a regression preset."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmlbench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmlbench import calibration

    parser.description = calibration.__doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("preset", nargs="?", default="regression", help="sweep preset or file (default regression)")
    parser.add_argument("--loss", default="bdl", help="the loss the A/A and planted arms train (default bdl)")
    parser.add_argument("--fresh", type=int, default=None, help="seeds beyond the preset's (default: as many as it has)")
    parser.add_argument("--draws", type=int, default=40, help="resampled comparisons per kind (default 40)")
    parser.add_argument("--worse", type=float, default=0.5, help="label fraction relabelled in the worse arm (0.5)")
    parser.add_argument("--better", type=float, default=0.25, help="... in the better arm, compared with worse (0.25)")
    parser.add_argument("--out", type=Path, default=None, help="run folders and results (default calibration/PRESET)")
    parser.add_argument(
        "--reuse", type=Path, default=None, metavar="RUNS_DIR",
        help="copy finished runs of the same run_id from here (e.g. sweeps/regression/runs) instead of training",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
    parser.add_argument(
        "--hit-edits", type=Path, default=None, metavar="RESULTS",
        help="instead: power with real query noise, no training -- planted effects of exact size made by editing the "
        "per-query hits of RESULTS' losses (e.g. results/baseline; dmlbench.calibration.hit_edits)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dmlbench.calibration import calibrate
    from dmlbench.config import apply_overrides, config_from_dict, config_to_dict
    from dmlbench.rundir import atomic_write_text
    from dmlbench.sweep.spec import load_sweep

    if args.hit_edits is not None:
        return run_hit_edits(args)
    sweep = load_sweep(args.preset)
    seeds = [int(s) for s in sweep.grid.get("seed", [])]
    if len(seeds) < 2:
        raise UsageError(f"{args.preset}: calibration needs a preset whose grid has at least 2 seeds")
    if args.draws < 1 or not 0 <= args.better <= 1 or not 0 <= args.worse <= 1:
        raise UsageError("--draws must be >= 1 and --worse/--better fractions in [0, 1]")
    base = config_to_dict(apply_overrides(config_from_dict(sweep.base), args.set))
    out = args.out or Path("calibration") / sweep.name
    started = time.time()
    result = calibrate(
        base, seeds, out, loss=args.loss, fresh=len(seeds) if args.fresh is None else args.fresh,
        draws=args.draws, worse=args.worse, better=args.better, reuse=args.reuse,
    )  # fmt: skip
    text = (
        f"calibration of `compare` on {sweep.name} (loss {args.loss}; worse: {args.worse:g} of labels relabelled, "
        f"better: {args.better:g} against {args.worse:g}); {time.time() - started:.0f} s\n\n{result.markdown()}\n"
    )
    print(text)
    atomic_write_text(out / "calibration.md", text)
    return 0


def run_hit_edits(args: argparse.Namespace) -> int:
    """`--hit-edits RESULTS`: power at -1.0, -0.5, +0.5 points (and A/A) from edited real hits."""
    from dmlbench.calibration.hit_edits import power_by_hit_edits
    from dmlbench.results.collect import load_frame, load_hits
    from dmlbench.rundir import atomic_write_text

    if args.draws < 1:
        raise UsageError("--draws must be >= 1")
    frame = load_frame(args.hit_edits)
    started = time.time()
    try:
        result = power_by_hit_edits(frame, load_hits(args.hit_edits, frame), draws=args.draws)
    except ValueError as err:
        raise UsageError(f"{args.hit_edits}: {err}") from err
    text = f"power of `compare` by hit edits of {args.hit_edits}; {time.time() - started:.0f} s\n\n{result.markdown()}\n"
    print(text)
    out = args.out or Path("calibration") / "hit-edits"
    atomic_write_text(out / "power.md", text)
    return 0
