"""The functional checks of tests/benchmarks/test_bench_sweep.py at a size that runs in every CI run
(the benchmarks are skipped there by --benchmark-skip and keep only the timings): a dry run over a
large grid validates every cell and writes nothing; `status` classifies run folders from the folders
alone (done / failed with its first error line / interrupted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dmlbench import rundir
from dmlbench.sweep import expand, run_sweep, sweep_from_dict, sweep_status


def grid_sweep(tmp_path: Path, executor: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "name": "big",
        "output_dir": str(tmp_path / "sweep"),
        "base": {"loss": {"name": "bdl"}, "data": {"root": str(tmp_path / "data")}},
        "grid": {"seed": list(range(n)), "loss.params.alpha": [1.0, 2.0, 3.0, 4.0], "train.lr": [0.1, 0.01, 0.001]},
        "executor": executor,
    }


def test_dry_run_of_a_large_grid_writes_nothing(tmp_path: Path) -> None:
    sweep = sweep_from_dict(grid_sweep(tmp_path, {"kind": "inline"}, n=10))
    report = run_sweep(sweep, dry_run=True)
    assert len(report.cells) == 120 and len({c.run_id for c in report.cells}) == 120
    assert all(s.state == "unsubmitted" for s in report.before) and not report.submitted
    assert not (tmp_path / "sweep").exists()


def test_status_from_run_folders_alone(tmp_path: Path) -> None:
    sweep = sweep_from_dict(grid_sweep(tmp_path, {"kind": "local"}, n=5))
    cells = expand(sweep, validate=False)
    want: dict[str, tuple[str, str | None]] = {}
    for i, cell in enumerate(cells):
        folder = sweep.runs_dir / cell.run_id
        folder.mkdir(parents=True)
        (folder / rundir.CONFIG).write_text("seed: 0\n")
        if i % 10 < 7:
            (folder / rundir.DONE).write_text("{}")
            want[cell.run_id] = ("done", None)
        elif i % 10 < 9:
            (folder / rundir.ERROR).write_text(f"RuntimeError: cell {i}\n\nTraceback ...\n")
            want[cell.run_id] = ("failed", f"RuntimeError: cell {i}")
        else:
            want[cell.run_id] = ("interrupted", None)
    rundir.atomic_write_text(sweep.output_dir / "sweep.yaml", yaml.safe_dump(sweep.to_dict()))
    _, statuses = sweep_status(sweep.output_dir)  # the sweep as read back from its folder
    assert {s.run_id: (s.state, s.error) for s in statuses} == want
