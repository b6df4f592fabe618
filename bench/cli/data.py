"""`dmlbench data synth` and `dmlbench data check`: parsers and handlers over dmlbench.data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dmlbench.config import load_yaml
from dmlbench.data import DATASETS, DatasetError
from dmlbench.data.check import check_dataset, format_report
from dmlbench.data.synthshop import SIZES, generate_synthshop, is_complete


def add_data_synth_parser(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "synth",
        help="render the synthshop dataset (In-Shop format) into a folder",
        description="Render synthshop, a procedurally generated product dataset in the DeepFashion In-Shop "
        "on-disk format. Deterministic from --seed. Sizes: "
        + "; ".join(f"{p.name}: {p.num_items} items x {p.images_per_item[0]}-{p.images_per_item[1]} images "
                    f"at {p.image_size} px" for p in SIZES.values())
        + ". 'full' takes several minutes (use --workers).",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder (new, empty, or a synthshop folder)")
    parser.add_argument("--size", choices=list(SIZES), default="small", help="size preset (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default: 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_data_synth)


def run_data_synth(args: argparse.Namespace) -> int:
    out: Path = args.out
    if is_complete(out, args.size, args.seed):
        print(f"{out} already holds synthshop size={args.size} seed={args.seed}; nothing to do")
        return 0
    try:
        generate_synthshop(out, size=args.size, seed=args.seed, progress=not args.quiet, workers=args.workers)
    except DatasetError as err:
        print(f"error: {err}")
        return 2
    return 0


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` loader options, values parsed as YAML.

    >>> parse_options(["train_classes=5", "crop_bboxes=true", "image_dir=img"])
    {'train_classes': 5, 'crop_bboxes': True, 'image_dir': 'img'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise argparse.ArgumentTypeError(f"option '{pair}' must look like key=value")
        key, raw = pair.split("=", 1)
        out[key.strip()] = load_yaml(raw) if raw.strip() else ""
    return out


def run_data_check(args: argparse.Namespace) -> int:
    try:
        options = parse_options(args.option)
    except argparse.ArgumentTypeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = check_dataset(
        args.root, args.dataset, options=options, images=not args.no_images, progress=sys.stderr.isatty()
    )
    if args.json:
        print(json.dumps(report, indent=None))
    else:
        print(format_report(report))
    return 1 if report["problems"] else 0


def add_data_check_parser(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "check",
        help="validate a dataset folder: annotation files, split counts, unreadable images",
        description="Load a dataset's index from its official annotation files, report images and classes per "
        "split and the attribute dimension, and fully decode every image (unless --no-images). Exits 1 when "
        "anything is wrong. --json prints one object: {splits: {split: {images, classes}}, attributes: K or "
        "null, problems: [...], bad_images: [...], notes: [...], protocol, ks}; only splits present are listed.",
    )
    parser.add_argument("root", type=Path, metavar="ROOT", help="the dataset folder as unpacked")
    parser.add_argument("--dataset", required=True, help="dataset name: " + ", ".join(DATASETS.names()))
    parser.add_argument("--no-images", action="store_true", help="check annotation files and counts only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="loader option, as data.options in a config (e.g. -o train_classes=5); repeatable",
    )
    parser.set_defaults(func=run_data_check)
