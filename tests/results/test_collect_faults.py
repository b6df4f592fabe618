"""`collect` on damaged results: a truncated or corrupt metrics.json, missing layers, a bad cell.json and
one run copied into two folders are listed as not collected with the reason (a copy is never counted
as an extra seed); SIGTERM while collect works leaves the previous report as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.paths import REPO
from support.synthetic_runs import recall_metrics, write_run

from dmlbench import rundir
from dmlbench.results.collect import collect


def test_damaged_runs_are_listed_with_their_reason(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good = write_run(runs, {"seed": 0}, {"emb": recall_metrics(0.5)})
    damaged = {
        "truncated": write_run(runs, {"seed": 1}, {"emb": recall_metrics(0.5)}),
        "no layers": write_run(runs, {"seed": 2}, {"emb": recall_metrics(0.5)}),
        "empty layers": write_run(runs, {"seed": 3}, {"emb": recall_metrics(0.5)}),
        "bad cell": write_run(runs, {"seed": 4}, {"emb": recall_metrics(0.5)}),
    }
    metrics = damaged["truncated"] / rundir.METRICS
    metrics.write_bytes(metrics.read_bytes()[:40])
    rundir.atomic_write_json(damaged["no layers"] / rundir.METRICS, {"run_id": damaged["no layers"].name})
    rundir.atomic_write_json(damaged["empty layers"] / rundir.METRICS, {"layers": {"emb": 0.5}})
    (damaged["bad cell"] / rundir.CELL).write_text('{"sweep": "t", "gri')
    # the good run copied elsewhere in the tree (a moved sweep, a backup): the same run_id twice
    shutil.copytree(good, tmp_path / "backup" / good.name)

    collection = collect(tmp_path)
    assert collection.finished == [tmp_path / "backup" / good.name]  # counted once
    assert set(collection.frame["seed"]) == {0} and len(collection.frame) == 6
    reasons = {p.path: (p.state, p.reason) for p in collection.problems}
    assert reasons[f"runs/{good.name}"] == ("duplicate", f"same run_id as backup/{good.name}: counted once")
    assert reasons[f"runs/{damaged['truncated'].name}"][1].startswith("DONE but unreadable results: JSONDecodeError")
    assert "KeyError: 'layers'" in reasons[f"runs/{damaged['no layers'].name}"][1]
    assert "'layers' must map each layer to its metrics" in reasons[f"runs/{damaged['empty layers'].name}"][1]
    assert reasons[f"runs/{damaged['bad cell'].name}"][1].startswith("unreadable cell.json")
    assert all(state in ("broken", "duplicate") for state, _ in reasons.values())


def test_sigterm_during_collect_leaves_the_previous_report(tmp_path: Path) -> None:
    for seed in range(3):
        for loss in ("bdl", "sbdl"):
            write_run(tmp_path / "runs", {"seed": seed, "loss.name": loss}, {"emb": recall_metrics(0.3 + 0.1 * seed)})
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("the previous report\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmlbench", "collect", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob(".report.*.tmp/results.csv")):  # staged, now drawing the plots
        assert proc.poll() is None and time.time() < deadline, "collect finished before it could be stopped"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "terminated; the previous report is left as it was" in err
    assert sorted(p.name for p in report.iterdir()) == ["report.md"]
    assert (report / "report.md").read_text() == "the previous report\n"
    assert not list(tmp_path.glob(".report.*"))  # the staging folder is gone


def test_collect_in_process_puts_the_sigterm_handler_back(tmp_path: Path) -> None:
    """`main(["collect", ...])` from a long-lived process (a test run, a notebook) must not leave its
    handler behind: a later SIGTERM would then raise SystemExit with collect's message in whatever runs."""
    from dmlbench.cli import main

    write_run(tmp_path / "runs", {"loss.name": "bdl", "seed": 0}, {"emb": recall_metrics(0.5)})
    before = signal.getsignal(signal.SIGTERM)
    assert main(["collect", str(tmp_path), "--no-plots"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
