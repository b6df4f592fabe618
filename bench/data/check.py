"""`dmlbench data check ROOT --dataset NAME`: are the files there, do the counts hold, do the images decode?"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.config import load_yaml
from dmlbench.data import DATASETS, DatasetError
from dmlbench.data.images import scan_images
from dmlbench.data.splits import split_summary

EVAL_SPLITS = ("train", "val", "query", "gallery", "test")


def check_dataset(
    root: str | Path,
    dataset: str,
    *,
    options: dict[str, Any] | None = None,
    images: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Everything `data check` reports, as a JSON-ready dict; `problems` is empty when the dataset is usable."""
    report: dict[str, Any] = {
        "dataset": dataset,
        "root": str(root),
        "splits": {},
        "attributes": None,
        "protocol": None,
        "ks": None,
        "notes": [],
        "problems": [],
        "bad_images": [],
    }
    try:
        DATASETS.check_params(dataset, options or {})
        index = DATASETS.get(dataset)(root, **(options or {}))
    except KeyError as err:
        report["problems"].append(str(err).strip('"'))
        return report
    except (DatasetError, ValueError, OSError) as err:
        report["problems"].append(str(err))
        return report
    report["splits"] = split_summary(index)
    report["attributes"] = index.num_attributes or None
    report["protocol"] = index.protocol
    report["ks"] = list(index.ks)
    report["notes"] = list(index.notes)
    for split, counts in report["splits"].items():
        singletons = _single_image_classes(index.labels[index.splits == split])
        if singletons and split in ("train", "test"):
            counts["single_image_classes"] = singletons
    if images:
        bad = scan_images(index.root, index.paths, progress=progress, use_cache=False)  # an explicit check decodes everything
        report["bad_images"] = [{"path": p, "reason": why} for p, why in bad]
        by_reason: dict[str, int] = {}
        for _, why in bad:
            key = why.split(":", 1)[0]
            by_reason[key] = by_reason.get(key, 0) + 1
        for reason, count in sorted(by_reason.items()):
            report["problems"].append(f"{count} of {len(index)} images {reason} (listed in bad_images)")
    return report


def _single_image_classes(labels: np.ndarray) -> int:
    """Classes with one image: they can never be a retrieval query with a match (nor a P x K class)."""
    if len(labels) == 0:
        return 0
    _, counts = np.unique(labels, return_counts=True)
    return int((counts == 1).sum())


def format_report(report: dict[str, Any], max_bad: int = 20) -> str:
    lines = [f"{report['dataset']} at {report['root']}"]
    if report["splits"]:
        lines.append(f"  protocol {report['protocol']}, K = {report['ks']}")
        for split, counts in report["splits"].items():
            extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if k not in ("images", "classes"))
            lines.append(
                f"  {split:<8} {counts['images']:>8} images {counts['classes']:>7} classes" + (f" ({extra})" if extra else "")
            )
        lines.append(f"  attributes: {report['attributes'] if report['attributes'] else 'none'}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    for bad in report["bad_images"][:max_bad]:
        lines.append(f"  bad image: {bad['path']} ({bad['reason']})")
    if len(report["bad_images"]) > max_bad:
        lines.append(f"  ... and {len(report['bad_images']) - max_bad} more bad images")
    if report["problems"]:
        lines.extend(f"PROBLEM: {p}" for p in report["problems"])
    else:
        lines.append("OK")
    return "\n".join(lines)


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
