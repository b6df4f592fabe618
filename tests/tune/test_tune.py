"""`dmlbench tune` end to end: the same budget per method, the final stage in a normal sweep folder,
kill-and-rerun resuming to exactly the planned trials, and the test split never read while tuning.

The machinery tests use `support.tune_standin:standin_tune_run` (a trainer stand-in with a known objective,
imported by the local executor's job processes from tests/); the test-split test runs the real
trainer on a dataset whose evaluation images raise when read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import run_cli
from support.configs import tiny_run_config
from support.paths import REPO
from support.tune import ENV, STANDIN, check_study, run_configs, write_spec

from dmlbench import rundir
from dmlbench.errors import TuneError
from dmlbench.tune.loop import run_tune
from dmlbench.tune.report import history_frame, plot_history, tune_status
from dmlbench.tune.spec import load_spec
from dmlbench.tune.study import existing_studies


def test_study_same_budget_final_stage_status_collect(tiny_synthshop: Path, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, tiny_synthshop, executor={"kind": "inline"})
    lines: list[str] = []
    run_tune(load_spec(spec_path), runner=STANDIN, log=lines.append)
    out = tmp_path / "tune"
    check_study(out, ["bdl", "multi-similarity"], trials=3, folds=2, seeds=2)
    # the final stage trains each method's best trial
    studies = existing_studies(out)
    for c in run_configs(out / "final" / "runs"):
        best = max((t for t in studies[c.name]), key=lambda t: t.value)
        assert c.train.lr == pytest.approx(best.params["train.lr"])
    # a re-run is idempotent: nothing new is asked or run
    lines.clear()
    run_tune(load_spec(spec_path), runner=STANDIN, log=lines.append)
    assert not any("trial" in line for line in lines), lines
    check_study(out, ["bdl", "multi-similarity"], trials=3, folds=2, seeds=2)
    # a changed protocol never mixes into the folder's study
    with pytest.raises(TuneError, match="holds a study with a different trials"):
        run_tune(load_spec(write_spec(tmp_path, tiny_synthshop, trials=5)), runner=STANDIN)
    assert "bdl               3/3     3     0       0" in tune_status(out)
    assert "final stage (2 seeds per method, on test): 4 done" in tune_status(out)
    as_json = run_cli("status", str(out), "--json", env=ENV)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [(m["method"], m["planned"], m["done"]) for m in data["methods"]] == [("bdl", 3, 3), ("multi-similarity", 3, 3)]
    assert data["folds"] == 2 and len(data["final_cells"]) == 4 and {c["state"] for c in data["final_cells"]} == {"done"}
    assert plot_history(history_frame(out), tmp_path / "history", "map@r")[0].is_file()
    collected = run_cli("collect", str(out), "--no-plots", env=ENV)
    assert collected.returncode == 0, collected.stderr
    assert "Protocol: TPE, 3 trials per method (same budget), objective map@r (emb) = mean over 2" in collected.stdout
    assert "| bdl | 3/0 |" in collected.stdout


@pytest.mark.slow
def test_killed_tune_resumes_to_exactly_the_planned_trials(tiny_synthshop: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, tiny_synthshop, trials=4, seeds=1)
    out = tmp_path / "tune"
    env = {**os.environ, **ENV, "STANDIN_RUN_S": "0.5"}
    cmd = [sys.executable, "-m", "dmlbench", "tune", str(spec), "--runner", STANDIN]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once some trials are told and others are in flight
        done = sum(t.state.name == "COMPLETE" for ts in existing_studies(out).values() for t in ts) if out.is_dir() else 0
        if done >= 2:
            break
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # only tune itself: its local jobs live on and finish their cells
    proc.wait()
    studies = existing_studies(out)
    asked = sum(len(ts) for ts in studies.values())
    left = [t for ts in studies.values() for t in ts if t.state.name != "COMPLETE"]
    assert left or asked < 8, "the kill came after the study had finished"
    assert not (out / "final").exists()
    result = run_cli("tune", str(spec), "--runner", STANDIN, env={**ENV, "STANDIN_RUN_S": "0.5"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming" in result.stdout
    check_study(out, ["bdl", "multi-similarity"], trials=4, folds=2, seeds=1)


@pytest.mark.slow
def test_test_split_never_read_while_tuning(tiny_synthshop: Path, tmp_path: Path) -> None:
    """On `synthshop-guarded` every read of a query/gallery image raises: tuning completes (it only reads
    training images), and the final stage (the first to touch test) is the one that fails on them."""
    base = tiny_run_config(
        tiny_synthshop, tmp_path / "unused", train={"epochs": 1}, plugins=["plugins.guarded_test_split"],
        data={"dataset": "synthshop-guarded", "root": str(tiny_synthshop), "image_size": 32},
        model={"backbone": "resnet18", "fc_dim": 16, "emb_dim": 8}, eval={"batch_size": 64, "layers": ["emb"]},
        sampler={"name": "batch-wise", "params": {"classes_per_batch": 4, "images_per_class": 2}, "batches_per_epoch": 1},
    )  # fmt: skip
    spec = write_spec(tmp_path, tiny_synthshop, base=base, methods=[{"loss": "bdl"}], trials=1, seeds=1, executor={"kind": "inline"})
    result = run_cli("tune", str(spec), env=ENV)
    out = tmp_path / "tune"
    studies = existing_studies(out)
    assert [t.state.name for t in studies["bdl"]] == ["COMPLETE"], result.stdout + result.stderr
    assert len(run_configs(out / "trials" / "runs")) == 2
    assert result.returncode == 1  # the final stage failed, on the guarded images
    (final_run,) = (out / "final" / "runs").iterdir()
    assert "EVALUATION-IMAGES-MUST-NOT-BE-READ" in (final_run / rundir.ERROR).read_text()
