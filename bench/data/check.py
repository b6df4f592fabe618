"""What `dmlbench data check` reports: are the files there, do the counts hold, do the images decode?

The command itself (parser, options, exit codes) is in dmlbench.cli.data_check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmlbench.data import DATASETS, DatasetError
from dmlbench.data.scan import scan_images
from dmlbench.data.splits import split_summary


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
        report["problems"].append(str(err))
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
