"""Run configs for tests: one that trains in seconds on CPU, and writing one to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_run_config(data_root: Path, output_dir: Path, **sections: Any) -> dict[str, Any]:
    """A run that trains in seconds on CPU: ResNet-18 at 32 px on tiny synthshop."""
    cfg: dict[str, Any] = {
        "seed": 0,
        "output_dir": str(output_dir),
        "data": {"dataset": "synthshop", "root": str(data_root), "image_size": 32},
        "model": {"backbone": "resnet18", "fc_dim": 64, "emb_dim": 32},
        "loss": {"name": "bdl"},
        "sampler": {"name": "batch-wise", "params": {"classes_per_batch": 6, "images_per_class": 3}},
        "train": {"epochs": 2, "lr": 1e-3},
        "eval": {"batch_size": 64},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
