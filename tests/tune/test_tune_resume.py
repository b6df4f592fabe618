"""A killed `tune` resumes exactly (issue 28, point 2): a trial is written to the journal with all its
params in one record, so SIGKILLs at random journal sizes never leave a trial with part of its params;
the study then ends with the trials, values and final stage of an uninterrupted one (the TPE sampler
is seeded). A trial lacking params all the same (a journal of an older dmlbench) is abandoned, never run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config
from support.paths import REPO

from dmlbench import rundir
from dmlbench.tune.study import INCOMPLETE, JOURNAL_FILE, existing_studies, journal_storage

HERE = Path(__file__).resolve().parent
STANDIN = "support.tune_standin:standin_tune_run"
ENV = {"PYTHONPATH": os.pathsep.join([str(HERE), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
SPACES = {
    "bdl": {"loss.params.alpha", "loss.params.beta", "train.lr"},
    "multi-similarity": {"loss.params.alpha", "loss.params.beta", "loss.params.base", "train.lr"},
}


def write_spec(folder: Path, data_root: Path, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "t",
        "output_dir": str(folder / "tune"),
        "base": tiny_run_config(data_root, folder / "unused", train={"epochs": 1}),
        "methods": [{"loss": "bdl"}, {"loss": "multi-similarity"}],
        "trials": 5,
        "startup_trials": 2,  # TPE proper from the third trial on: proposals depend on the trials before
        "folds": 2,
        "seeds": 1,
        "parallel": 1,
        "executor": {"kind": "inline"},
        **extra,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_record(out: Path) -> dict[str, Any]:
    """Every trial (number, state, params, value) per method, protocol.json and the final cells' metrics."""
    trials = {name: [(t.number, t.state.name, t.params, t.value) for t in ts] for name, ts in existing_studies(out).items()}
    final = {}
    for run in sorted((out / "final" / "runs").iterdir()):
        metrics = rundir.read_json(run / rundir.METRICS)
        final[run.name] = metrics["layers"]
    protocol = rundir.read_json(out / "protocol.json")
    return {"trials": trials, "final": final, "protocol": protocol}


def journal_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_journal_sizes_resumes_to_the_uninterrupted_study(tiny_synthshop: Path, tmp_path: Path) -> None:
    straight = write_spec(tmp_path / "straight", tiny_synthshop)
    done = run_cli("tune", str(straight), "--runner", STANDIN, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = study_record(tmp_path / "straight" / "tune")

    spec = write_spec(tmp_path / "killed", tiny_synthshop)
    out = tmp_path / "killed" / "tune"
    journal = out / JOURNAL_FILE
    env = {**os.environ, **ENV}
    cmd = [sys.executable, "-m", "dmlbench", "tune", str(spec), "--runner", STANDIN]
    rng = random.Random(28)
    kills: list[int] = []
    while len(kills) < 10:
        start = journal_lines(journal)
        grow = rng.randint(1, 2)  # kill when the journal has grown by this many lines
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while proc.poll() is None and journal_lines(journal) < start + grow:
            assert time.time() < deadline, "tune made no progress"
            time.sleep(0.0005)
        if proc.poll() is not None:  # finished before the kill came
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(journal_lines(journal))
    assert len(kills) >= 8, kills
    assert len(set(kills)) == len(kills)  # killed at 8+ different journal sizes

    resumed = run_cli("tune", str(spec), "--runner", STANDIN, env=ENV)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got = study_record(out)
    for name, trials in got["trials"].items():
        assert all(set(params) == SPACES[name] for _n, _s, params, _v in trials), trials  # every param, every trial
    assert got == expected


def test_a_trial_missing_params_is_abandoned_and_asked_anew(tiny_synthshop: Path, tmp_path: Path) -> None:
    """A journal of an older dmlbench, killed between a trial's creation and its params: the trial has only
    alpha. It never ran; it is abandoned (FAIL, outside the budget) and the method still gets 2 complete
    trials with every param (never one run with base-config values for the missing ones)."""
    spec = write_spec(tmp_path, tiny_synthshop, methods=[{"loss": "bdl"}], trials=2, startup_trials=1)
    out = tmp_path / "tune"
    study = optuna.create_study(storage=journal_storage(out), study_name="bdl", direction="maximize")
    trial = study.ask()
    trial.suggest_float("loss.params.alpha", 0.5, 8.0, log=True)  # ...and killed here
    result = run_cli("tune", str(spec), "--runner", STANDIN, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bdl trial 0: asked without loss.params.beta, train.lr" in result.stdout
    trials = existing_studies(out)["bdl"]
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert INCOMPLETE in trials[0].user_attrs and all(set(t.params) == SPACES["bdl"] for t in trials[1:])
    assert len(list((out / "trials" / "runs").iterdir())) == 4  # 2 trials x 2 folds: the abandoned one never ran
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["methods"]["bdl"]["asked"] == 2 and protocol["methods"]["bdl"]["done"] == 2
