"""Issue 19 on a real SLURM cluster: a plugin loss given only by `--plugin` reaches the SLURM jobs,
each run folder records the plugin's code, and naming the module in `plugins:` instead gives the same ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config
from support.slurm import LOCAL_PROFILE

from dmlbench.sweep import cell_statuses, expand, load_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_plugin_given_by_flag_reaches_slurm_jobs(slurm_cluster: None, tmp_path: Path, tiny_synthshop: Path) -> None:  # noqa: F811
    base = tiny_run_config(tiny_synthshop, tmp_path / "unused", loss={"name": "proxy-nca-test"}, train={"epochs": 1})
    sweep = {"name": "plugin-slurm", "output_dir": str(tmp_path / "sweep"), "base": base, "grid": {"seed": [0, 1]},
             "executor": {"kind": "slurm", "profile": LOCAL_PROFILE, "timeout_min": 10}}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    proc = run_cli("sweep", str(path), "--plugin", "plugins.proxy_losses")  # the flag after the command
    assert proc.returncode == 0, proc.stdout + proc.stderr
    submitted = load_sweep(tmp_path / "sweep")
    assert submitted.base["plugins"] == ["plugins.proxy_losses"]  # recorded in the sweep folder
    cells = expand(submitted, validate=False)
    end = time.time() + 480
    while not all(s.state in ("done", "failed") for s in cell_statuses(submitted, cells)):
        assert time.time() < end, [(s.state, s.error) for s in cell_statuses(submitted, cells)]
        time.sleep(3)
    states = cell_statuses(submitted, cells)
    assert [s.state for s in states] == ["done", "done"], [s.error for s in states]
    for cell in cells:
        code = json.loads((submitted.runs_dir / cell.run_id / "code.json").read_text())
        assert code["loss:proxy-nca-test"]["module"] == "plugins.proxy_losses"
    # the same experiment with `plugins:` in the file: same run ids, nothing to run
    path.write_text(yaml.safe_dump({**sweep, "base": {**base, "plugins": ["plugins.proxy_losses"]}}))
    again = run_cli("sweep", str(path), "--dry-run")
    assert again.returncode == 0 and "before: 2 done; would submit 0" in again.stdout, again.stdout + again.stderr
