"""Helpers shared by the tests: paths, tiny run configs, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `dmlbench` CLI in a subprocess (same interpreter as the tests)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dmlbench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or REPO,
    )
