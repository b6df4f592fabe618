"""A committed report is never older than the code that draws it: `results/quickstart/drawn_by.json` holds
the hash of the drawing code (dmlbench.results.report.DRAWING_CODE) it was made with. After a change to
that code, regenerate it with its one command (docs/results.md): `dmlbench quickstart --report results/quickstart`."""

from __future__ import annotations

import json
from pathlib import Path

from support.paths import REPO

from dmlbench.results.report import DRAWN_BY, drawing_code_hash

REGENERATE = {"results/quickstart": "dmlbench quickstart --report results/quickstart"}


# strict: once the report is regenerated this test passes, and the marker must go.
def test_committed_reports_are_drawn_by_the_current_code() -> None:
    current = drawing_code_hash()
    for folder, command in REGENERATE.items():
        stamp = REPO / folder / DRAWN_BY
        assert stamp.is_file(), f"{folder} has no {DRAWN_BY}: regenerate it with `{command}`"
        drawn = json.loads(stamp.read_text())["sha256"]
        assert drawn == current, f"{folder} was drawn by older plotting/table code: regenerate it with `{command}`"


def test_every_report_records_the_code_that_drew_it(tmp_path: Path) -> None:
    from support.synthetic_runs import recall_metrics, write_run

    from dmlbench.results.report import write_report

    for seed in range(2):
        write_run(tmp_path / "runs", {"loss.name": "bdl", "seed": seed}, {"emb": recall_metrics(0.5)})
    write_report(tmp_path, tmp_path / "report", plots=False)
    assert json.loads((tmp_path / "report" / DRAWN_BY).read_text())["sha256"] == drawing_code_hash()
