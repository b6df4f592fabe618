"""Sweep scale (issue #7): a 1,000-cell grid expands, validates and submits (--dry-run, and against
the local SLURM cluster) in under 10 s; `status` over 1,000 run folders answers in under 2 s.

Run: python -m pytest tests/benchmarks/test_bench_sweep.py --benchmark-only

The functional checks (not the timings) also run in every CI run, at a smaller size: tests/sweep/test_sweep_at_scale.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dmlbench import rundir
from dmlbench.sweep import expand, run_sweep, sweep_from_dict, sweep_status

REPO = Path(__file__).resolve().parents[2]


def thousand_cells(tmp_path: Path, executor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "big",
        "output_dir": str(tmp_path / "sweep"),
        "base": {"loss": {"name": "bdl"}, "data": {"root": str(tmp_path / "data")}},
        "grid": {"seed": list(range(10)), "loss.params.alpha": [1.0 + i for i in range(10)], "train.lr": [10.0**-i for i in range(1, 11)]},
        "executor": executor,
    }


def timed(benchmark: Any, fn: Any, limit_s: float) -> Any:
    started = time.perf_counter()
    result = benchmark.pedantic(fn, rounds=1, iterations=1)
    elapsed = time.perf_counter() - started
    assert elapsed < limit_s, f"took {elapsed:.2f} s (limit {limit_s} s)"
    return result


def test_bench_dry_run_1000_cells(benchmark: Any, tmp_path: Path) -> None:
    sweep = sweep_from_dict(thousand_cells(tmp_path, {"kind": "inline"}))
    report = timed(benchmark, lambda: run_sweep(sweep, dry_run=True), limit_s=10)
    assert len(report.cells) == 1000 and all(s.state == "unsubmitted" for s in report.before)
    assert not (tmp_path / "sweep").exists()


def test_bench_status_1000_run_folders(benchmark: Any, tmp_path: Path) -> None:
    sweep = sweep_from_dict(thousand_cells(tmp_path, {"kind": "local"}))
    cells = expand(sweep, validate=False)
    for i, cell in enumerate(cells):
        folder = sweep.runs_dir / cell.run_id
        folder.mkdir(parents=True)
        (folder / rundir.CONFIG).write_text("seed: 0\n")
        if i % 10 < 7:
            (folder / rundir.DONE).write_text("{}")
        elif i % 10 < 9:
            (folder / rundir.ERROR).write_text(f"RuntimeError: cell {i}\n\nTraceback ...\n")
    rundir.atomic_write_text(sweep.output_dir / "sweep.yaml", yaml.safe_dump(sweep.to_dict()))
    _, statuses = timed(benchmark, lambda: sweep_status(sweep.output_dir), limit_s=2)
    counts = {s: sum(x.state == s for x in statuses) for s in ("done", "failed", "interrupted")}
    assert counts == {"done": 700, "failed": 200, "interrupted": 100}


@pytest.mark.slurm
def test_bench_submit_1000_cells_to_slurm(benchmark: Any, tmp_path: Path) -> None:
    if shutil.which("sinfo") is None or subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        pytest.skip("needs the local SLURM cluster (slurm/local-cluster up)")
    # held jobs (sbatch --hold): the cells are really queued, but none starts, and all are cancelled after
    executor = {"kind": "slurm", "profile": str(REPO / "slurm" / "profiles" / "local.yaml"), "slurm_additional_parameters": {"hold": True}}
    sweep = sweep_from_dict(thousand_cells(tmp_path, executor))
    try:
        report = timed(benchmark, lambda: run_sweep(sweep), limit_s=10)
        assert len(report.submitted) == 1000
        started = time.perf_counter()
        _, statuses = sweep_status(sweep.output_dir)  # 1,000 pending array tasks in squeue
        status_s = time.perf_counter() - started
        assert [s.state for s in statuses] == ["pending"] * 1000
        assert status_s < 2, f"status over 1,000 queued cells took {status_s:.2f} s"
        benchmark.extra_info["status_1000_queued_s"] = round(status_s, 3)
    finally:
        arrays = sorted({j.split("_")[0] for j in rundir.read_json(sweep.output_dir / "jobs.json").values()}) if (sweep.output_dir / "jobs.json").is_file() else []
        if arrays:
            subprocess.run(["scancel", *arrays], check=False)
