"""Progress in a log (a pipe, a SLURM job's file): plain lines, a few of them, never tqdm's redraws (`\\r`)."""

from __future__ import annotations

import io
from pathlib import Path

from support.cli import run_cli

from dmlbench.progress import LINE_EVERY_S, progress_bar


def test_piped_output_gets_lines_not_redraws(tmp_path: Path) -> None:
    proc = run_cli("data", "synth", str(tmp_path / "s"), "--size", "tiny")  # stderr is a pipe here
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("synthshop:")]
    assert 1 <= len(lines) <= 3, lines  # the start, the end (and a line per LINE_EVERY_S seconds)
    assert lines[-1].startswith("synthshop: 100%") and "288/288" in lines[-1]


def test_one_line_per_period_however_many_updates() -> None:
    out = io.StringIO()
    with progress_bar(total=10_000, desc="x", file=out) as bar:
        for _ in range(10_000):
            bar.update(1)  # all within one period: no line between the first and the last
    assert LINE_EVERY_S >= 10
    assert len(out.getvalue().splitlines()) == 2 and "\r" not in out.getvalue()
