"""A user's loss module works in `sweep` (validation and a real inline run) without editing the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config


@pytest.mark.slow
def test_plugin_loss_as_a_sweep_axis(tiny_synthshop: Path, tmp_path: Path) -> None:
    base = tiny_run_config(tiny_synthshop, tmp_path / "ignored", train={"epochs": 1, "lr": 1e-3})
    base["plugins"] = ["plugins.example_losses"]  # the config names the module: no CLI flag needed
    sweep = {
        "name": "plugin-sweep",
        "output_dir": str(tmp_path / "sweep"),
        "base": base,
        "grid": {"loss.name": ["cosine-margin", "bdl"]},
        "executor": {"kind": "inline"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))

    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**sweep, "grid": {"loss.name": ["cosine-margni"]}}))
    bad = run_cli("sweep", str(typo), "--dry-run")
    assert bad.returncode == 2 and "did you mean 'cosine-margin'" in bad.stderr

    proc = run_cli("sweep", str(path))
    assert proc.returncode == 0, proc.stderr
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "DONE").is_file() for r in runs)
    losses = {json.loads((r / "cell.json").read_text())["grid"]["loss.name"] for r in runs}
    assert losses == {"cosine-margin", "bdl"}
