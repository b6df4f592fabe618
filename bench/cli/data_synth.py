"""`dmlbench data synth OUT`: render the synthshop dataset (In-Shop format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmlbench.data.synthshop import SIZES, generate_synthshop, is_complete


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render synthshop, a procedurally generated product dataset in the DeepFashion In-Shop "
        "on-disk format. Deterministic from --seed. Sizes: "
        + "; ".join(f"{p.name}: {p.num_items} items x {p.images_per_item[0]}-{p.images_per_item[1]} images "
                    f"at {p.image_size} px" for p in SIZES.values())
        + ". 'full' takes several minutes (use --workers)."
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder (new, empty, or a synthshop folder)")
    parser.add_argument("--size", choices=list(SIZES), default="small", help="size preset (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default: 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if is_complete(out, args.size, args.seed):
        print(f"{out} already holds synthshop size={args.size} seed={args.seed}; nothing to do")
        return 0
    generate_synthshop(out, size=args.size, seed=args.seed, progress=not args.quiet, workers=args.workers)
    return 0
