"""Tune specs and checks for the `dmlbench tune` tests: a small study spec, the stand-in trainer with a
known objective, and the check that a study ran exactly the planned trials, folds and final seeds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from dmlbench import rundir
from dmlbench.config import config_from_dict, load_yaml
from dmlbench.tune.study import existing_studies
from support.configs import tiny_run_config
from support.paths import TESTS

STANDIN = "support.tune_standin:standin_tune_run"  # job processes import it with tests/ on PYTHONPATH
ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def write_spec(tmp_path: Path, data_root: Path, **extra: Any) -> Path:
    spec = {
        "name": "t",
        "output_dir": str(tmp_path / "tune"),
        "base": tiny_run_config(data_root, tmp_path / "unused", train={"epochs": 1}),
        "methods": [{"loss": "bdl"}, {"loss": "multi-similarity"}],
        "trials": 3,
        "folds": 2,
        "seeds": 2,
        "parallel": 2,
        "executor": {"kind": "local"},
        **extra,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_configs(runs: Path) -> list[Any]:
    return [config_from_dict(load_yaml((d / rundir.CONFIG).read_text())) for d in sorted(runs.iterdir()) if rundir.is_done(d)]


def check_study(out: Path, methods: list[str], trials: int, folds: int, seeds: int) -> None:
    """Exactly `trials` finished trials per method (the same budget), one cell per trial x fold, all on
    validation folds; the final stage: seeds x methods runs on test."""
    studies = existing_studies(out)
    assert sorted(studies) == sorted(methods)
    for name in methods:
        states = [t.state.name for t in studies[name]]
        assert states == ["COMPLETE"] * trials, (name, states)
        assert sorted(t.number for t in studies[name]) == list(range(trials))
        assert len({tuple(sorted(t.params.items())) for t in studies[name]}) == trials  # no configuration twice
    trial_runs = run_configs(out / "trials" / "runs")
    assert len(trial_runs) == len(list((out / "trials" / "runs").iterdir())) == len(methods) * trials * folds
    assert {(c.eval.split, c.data.folds) for c in trial_runs} == {("val", folds)}
    final_runs = run_configs(out / "final" / "runs")
    assert len(final_runs) == len(methods) * seeds
    assert {(c.eval.split, c.data.folds) for c in final_runs} == {("test", 0)}
    assert sorted((c.name, c.seed) for c in final_runs) == sorted((m, s) for m in methods for s in range(seeds))
