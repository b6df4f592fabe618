"""`dmlbench data check ROOT --dataset NAME`: validate a dataset folder and count its splits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dmlbench.config import load_yaml
from dmlbench.data import DATASETS
from dmlbench.data.check import check_dataset, format_report
from dmlbench.errors import UsageError


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` loader options, values parsed as YAML.

    >>> parse_options(["train_classes=5", "crop_bboxes=true", "image_dir=img"])
    {'train_classes': 5, 'crop_bboxes': True, 'image_dir': 'img'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"option '{pair}' must look like key=value (e.g. -o train_classes=5)")
        key, raw = pair.split("=", 1)
        out[key.strip()] = load_yaml(raw) if raw.strip() else ""
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load a dataset's index from its official annotation files, report images and classes per "
        "split and the attribute dimension, and fully decode every image (unless --no-images). Exits 1 when "
        "anything is wrong. --json prints one object: {splits: {split: {images, classes}}, attributes: K or "
        "null, problems: [...], bad_images: [...], notes: [...], protocol, ks}; only splits present are listed."
    )
    parser.add_argument("root", type=Path, metavar="ROOT", help="the dataset folder as unpacked")
    parser.add_argument("--dataset", required=True, help="dataset name: " + ", ".join(DATASETS.names()))
    parser.add_argument("--no-images", action="store_true", help="check annotation files and counts only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="loader option, as data.options in a config (e.g. -o train_classes=5); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    options = parse_options(args.option)
    # A misspelled dataset name or loader option is a usage error (exit 2, one line), found before any file
    # is read; what the check finds in the folder is its report (exit 1).
    DATASETS.check_params(args.dataset, options)
    report = check_dataset(
        args.root, args.dataset, options=options, images=not args.no_images,
        progress=sys.stderr.isatty(),
    )
    print(json.dumps(report, indent=None) if args.json else format_report(report))
    return 1 if report["problems"] else 0
