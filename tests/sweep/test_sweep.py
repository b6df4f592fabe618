"""Sweeps: file parsing and typo errors, grid expansion, idempotent reruns, inline and local executors.

Most machinery tests use `standin_train_run` (tests/support/standin.py), a trainer stand-in that honours train_run's run-folder
contract (resume from checkpoint, DONE last, raise on a missing dataset) in milliseconds; the
end-to-end test runs the real trainer on tiny synthshop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from submitit.helpers import DelayedSubmission
from support.paths import TESTS
from support.sweeps import STANDIN, sweep_dict

from dmlbench import rundir
from dmlbench.config import Config, apply_overrides, dump_config, run_id
from dmlbench.sweep import (
    CellJob,
    SweepError,
    cell_statuses,
    expand,
    load_sweep,
    preemption_safe_python,
    route_preemption_to_submitit,
    run_sweep,
    sweep_from_dict,
    sweep_status,
)
from dmlbench.validation.checked_fields import CHECKED_FIELDS, checked_value, checked_values_key

# ------------------------------------------------------------------------------------ expansion


def test_expand_grid_exclude_include(tmp_path: Path) -> None:
    sweep = sweep_from_dict(
        sweep_dict(
            tmp_path,
            exclude=[{"seed": 1, "loss.params.alpha": 3.0}],
            include=[{"loss": "sbdl", "seed": 7}, {"seed": 0, "loss.params.alpha": 2.0}],  # 2nd = a grid cell
        )
    )
    cells = expand(sweep, validate=False)
    grids = [c.grid for c in cells]
    assert grids[:3] == [
        {"seed": 0, "loss.params.alpha": 2.0},
        {"seed": 0, "loss.params.alpha": 3.0},
        {"seed": 1, "loss.params.alpha": 2.0},
    ]
    # include: base + its keys (not crossed with the grid), with every grid coordinate filled in
    assert grids[3] == {"seed": 7, "loss.params.alpha": None, "loss.name": "sbdl"}
    assert cells[3].config.loss.name == "sbdl" and cells[3].config.loss.params == {}
    assert len(cells) == 4  # the duplicate include was merged into its grid cell
    assert len({c.run_id for c in cells}) == 4
    assert all(c.run_id == run_id(c.config) for c in cells)
    assert all(Path(c.config.output_dir) == (tmp_path / "out" / "runs").resolve() for c in cells)
    assert [c.run_id for c in expand(sweep, validate=False)] == [c.run_id for c in cells]  # stable


def test_loss_name_applied_before_its_params(tmp_path: Path) -> None:
    # choosing a loss resets its params; a grid listing params before the name must keep them
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"loss.params.alpha": [3.0], "loss": ["sbdl"]}))
    (cell,) = expand(sweep, validate=False)
    assert cell.config.loss.name == "sbdl" and cell.config.loss.params == {"alpha": 3.0}


def test_base_from_file_relative_to_sweep(tmp_path: Path) -> None:
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "base.yaml").write_text(yaml.safe_dump({"train": {"epochs": 5}, "seed": 3}))
    sweep_file = tmp_path / "cfgs" / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "f", "base": "base.yaml", "grid": {"train.lr": [0.1, 0.01]}}))
    cells = expand(load_sweep(sweep_file), validate=False)
    assert [(c.config.train.epochs, c.config.seed, c.config.train.lr) for c in cells] == [(5, 3, 0.1), (5, 3, 0.01)]
    assert load_sweep(sweep_file).output_dir == Path("sweeps/f")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gird": {"seed": [1]}}, "unknown sweep key 'gird'; did you mean 'grid'?"),
        ({"grid": {"train.epohcs": [1, 2]}}, "cell [train.epohcs=1]: unknown config key 'train.epohcs'; did you mean 'train.epochs'?"),
        ({"grid": {"seed": 3}}, "grid 'seed' must be a non-empty list"),
        ({"exclude": [{"sede": 1}]}, "exclude rule key 'sede' is neither a grid key nor a config key; did you mean 'seed'?"),
        ({"executor": {"kind": "slurm", "slurm_partiton": "gpu"}}, "did you mean 'slurm_partition'?"),
        ({"executor": {"kind": "kubernetes"}}, "executor kind must be one of slurm, local, inline"),
        ({"executor": {"profile": "no-such-profile"}}, "executor profile 'no-such-profile' not found"),
        ({"grid": {"train.device": ["cpu", "auto"]}}, "are the same run"),
    ],
)
def test_sweep_typos_fail_fast(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepError) as err:
        expand(sweep_from_dict({**sweep_dict(tmp_path), **change}), validate=False)
    assert message in str(err.value)


def test_validation_names_the_cell_before_submitting(tmp_path: Path) -> None:
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"loss": ["bdl", "bld"], "seed": [0]}))
    with pytest.raises(SweepError) as err:
        run_sweep(sweep, runner=STANDIN)
    assert "cell [loss.name=bld, seed=0]" in str(err.value) and "did you mean 'bdl'?" in str(err.value)
    assert not (tmp_path / "out" / "runs").exists()  # nothing was written, nothing ran


def _changed(value: Any) -> Any:
    """Another value of the same type, one that no checked field accepts."""
    if isinstance(value, str):
        return "no-such-value"
    if isinstance(value, list):
        return [*value, "no_such_value"]
    if isinstance(value, dict):
        return {**value, "no_such_param": 1}
    raise TypeError(f"no changed value for {value!r}: extend _changed")


@pytest.mark.parametrize("field", CHECKED_FIELDS)
def test_validation_key_changes_with_every_checked_field(field: str) -> None:
    cfg = Config()
    changed = apply_overrides(cfg, {field: _changed(checked_value(cfg, field))})
    assert checked_values_key(changed) != checked_values_key(cfg)


@pytest.mark.parametrize("field", [f for f in CHECKED_FIELDS if f != "plugins"])  # plugins: an ImportError
def test_validation_checks_each_cell_differing_in_a_checked_field(tmp_path: Path, field: str) -> None:
    # the first cell passes the check; the second differs only in `field` and must be checked too
    good = checked_value(Config(), field)
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={field: [good, _changed(good)]}))
    with pytest.raises(SweepError, match=r"cell \[" + field.replace(".", r"\.")):
        expand(sweep, validate=True)


def test_checked_fields_are_every_field_the_name_check_reads() -> None:
    # A fixed list, not CHECKED_FIELDS again: the two tests above loop over that list, so a field
    # dropped from it would drop its tests with it.
    assert set(CHECKED_FIELDS) == {
        "plugins", "loss.name", "loss.params", "sampler.name", "sampler.params", "data.dataset", "data.options",
        "model.backbone",
    }  # fmt: skip


def test_a_grid_with_an_unknown_backbone_fails_validation(tmp_path: Path) -> None:
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"model.backbone": ["resnet18", "no-such"], "seed": [0]}))
    with pytest.raises(SweepError, match=r"cell \[model\.backbone=no-such, seed=0\].*unknown backbone 'no-such'"):
        expand(sweep, validate=True)
    assert not (tmp_path / "out" / "runs").exists()


def test_profile_then_sweep_settings(tmp_path: Path) -> None:
    sweep = sweep_from_dict(sweep_dict(tmp_path, executor={"kind": "slurm", "profile": "local", "mem_gb": 3}))
    assert sweep.executor.params["slurm_partition"] == "debug"  # from slurm/profiles/local.yaml
    assert sweep.executor.params["mem_gb"] == 3  # the sweep's own setting wins
    cli = sweep_from_dict(sweep_dict(tmp_path, executor={"kind": "slurm"}), executor="inline")
    assert cli.executor.kind == "inline"


# ------------------------------------------------------------------------------------ running


def test_inline_failure_isolated_and_rerun_idempotent(tmp_path: Path) -> None:
    data = sweep_dict(tmp_path, include=[{"data.root": str(tmp_path / "missing"), "seed": 9}])
    sweep = sweep_from_dict(data)
    report = run_sweep(sweep, runner=STANDIN, log=lambda _: None)
    cells = report.cells
    bad = cells[-1].run_id
    assert len(cells) == 5 and report.failed == [bad] and set(report.submitted) == {c.run_id for c in cells}

    states = {s.run_id: s for s in cell_statuses(sweep, cells)}
    assert [states[c.run_id].state for c in cells] == ["done"] * 4 + ["failed"]
    assert states[bad].error == f"DatasetError: dataset folder not found: {tmp_path / 'missing'}"
    assert "Traceback" in (sweep.runs_dir / bad / rundir.ERROR).read_text()
    cell_json = rundir.read_json(sweep.runs_dir / cells[1].run_id / rundir.CELL)
    assert cell_json == {"sweep": "t", "grid": {"seed": 0, "loss.params.alpha": 3.0}}
    assert yaml.safe_load((sweep.output_dir / "sweep.yaml").read_text())["grid"] == data["grid"]

    finished = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sweep.runs_dir.glob("*/*") if p.name in ("DONE", "metrics.json")}
    assert len(finished) == 8
    again = run_sweep(sweep_from_dict(data), runner=STANDIN, log=lambda _: None)
    assert set(again.submitted) == {bad}  # only the failed cell runs again
    assert finished == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished}

    # the data appears: the failed cell succeeds on the next rerun and its error.txt goes away
    (tmp_path / "missing").mkdir()
    third = run_sweep(sweep_from_dict(data), runner=STANDIN, log=lambda _: None)
    assert set(third.submitted) == {bad} and third.failed == []
    assert not (sweep.runs_dir / bad / rundir.ERROR).exists()
    _, statuses = sweep_status(sweep.output_dir)
    assert {s.state for s in statuses} == {"done"}


def test_interrupted_cell_resumes_from_checkpoint(tmp_path: Path) -> None:
    sweep = sweep_from_dict(sweep_dict(tmp_path, grid={"seed": [0]}, base={"data": {"root": str(tmp_path)}, "train": {"epochs": 3}}))
    (cell,) = expand(sweep, validate=False)
    folder = sweep.runs_dir / cell.run_id
    # a job killed after epoch 1 of 3: config, one history row, a checkpoint, no DONE
    folder.mkdir(parents=True)
    rundir.atomic_write_text(folder / rundir.CONFIG, dump_config(cell.config))
    rundir.write_history(folder, [{"epoch": 1, "pid": -1}])
    rundir.atomic_write_json(folder / rundir.CHECKPOINT, {"epoch": 1})
    assert [s.state for s in cell_statuses(sweep, [cell])] == ["interrupted"]
    report = run_sweep(sweep, runner=STANDIN, log=lambda _: None)
    assert list(report.submitted) == [cell.run_id]
    history = rundir.read_history(folder)
    assert [r["epoch"] for r in history] == [1, 2, 3] and history[0]["pid"] == -1  # epoch 1 kept, not redone
    assert "resuming" in (folder / rundir.LOG).read_text()


@pytest.mark.slow  # four CLI subprocesses, each importing torch
def test_dry_run_writes_nothing_and_cli_reports(tmp_path: Path) -> None:
    from support.cli import run_cli

    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep_dict(tmp_path, grid={"seed": [0, 1]})))
    dry = run_cli("sweep", str(sweep_file), "--dry-run", "--runner", STANDIN)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would submit") == 3 and "before: 2 unsubmitted; would submit 2" in dry.stdout
    assert not (tmp_path / "out").exists()

    real = run_cli("sweep", str(sweep_file), "--runner", STANDIN)
    assert real.returncode == 0, real.stderr + real.stdout
    status = run_cli("status", str(tmp_path / "out"))
    assert status.returncode == 0 and status.stdout.strip().endswith("2 done"), status.stdout
    as_json = json.loads(run_cli("status", str(sweep_file), "--json").stdout)
    assert [s["state"] for s in as_json] == ["done", "done"]
    typo = run_cli("sweep", str(sweep_file), "--profile", "nope")
    assert typo.returncode == 2 and "executor profile 'nope' not found" in typo.stderr


def test_local_executor_runs_cells_in_subprocesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    data = sweep_dict(
        tmp_path,
        grid={"seed": [0, 1]},
        include=[{"data.root": str(tmp_path / "missing")}],
        executor={"kind": "local", "local_parallelism": 2, "timeout_min": 5},
    )
    report = run_sweep(sweep_from_dict(data), runner=STANDIN, log=lambda _: None)
    assert len(report.failed) == 1 and report.failed[0] == report.cells[-1].run_id
    assert all(j.startswith("local:") for j in report.submitted.values())
    pids = {rundir.read_history(tmp_path / "out" / "runs" / c.run_id)[0]["pid"] for c in report.cells[:2]}
    assert os.getpid() not in pids and len(pids) == 2  # each cell ran in its own process
    sweep, statuses = sweep_status(tmp_path / "out")
    assert [s.state for s in statuses] == ["done", "done", "failed"]
    assert json.loads((tmp_path / "out" / "jobs.json").read_text()) == report.submitted


def test_checkpoint_resubmits_the_same_call() -> None:
    job = CellJob(STANDIN)
    delayed = job.checkpoint({"seed": 1}, "/nonexistent/run")
    assert isinstance(delayed, DelayedSubmission)
    assert delayed.function is job and delayed.args == ({"seed": 1}, "/nonexistent/run")


@contextlib.contextmanager
def submitit_style_handler(calls: list[str]) -> Iterator[None]:
    """Installs a stand-in for submitit's USR2 handler (the class name is what is checked) and routes
    the preemption signals through `route_preemption_to_submitit`, as a sweep cell does."""

    class SignalHandler:
        def checkpoint_and_try_requeue(self, signum: int, frame: Any) -> None:
            # like submitit: checkpoint, then `scontrol requeue`, a child process the signal also reaches
            child = subprocess.run(
                [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGUSR1); print('requeued')"],
                capture_output=True,
                text=True,
            )
            calls.append(f"{signal.Signals(signum).name}: {child.stdout.strip() or child.returncode}")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR2, SignalHandler().checkpoint_and_try_requeue)
    try:
        route_preemption_to_submitit()
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_repeated_preemption_signals_requeue_once() -> None:
    """SLURM delivers a preemption signal several times, to the task's whole process group (and once
    per scancel retry): checkpoint-and-requeue runs once, and the requeue command is not killed."""
    calls: list[str] = []
    with submitit_style_handler(calls):
        for sig in (signal.SIGUSR1, signal.SIGUSR1, signal.SIGUSR2):
            os.kill(os.getpid(), sig)
            time.sleep(0.01)
    assert calls == ["SIGUSR1: requeued"]  # without SIG_IGN inherited, the child dies of its own USR1: -10


def test_preemption_signal_in_a_forked_worker_is_left_to_the_job() -> None:
    """DataLoader workers are forked and inherit the handler; only the job's own process requeues."""
    calls: list[str] = []
    with submitit_style_handler(calls):
        pid = os.fork()
        if pid == 0:  # the "worker": receives the group's signal, must not run the handler
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            os._exit(len(calls))
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and calls == []


def test_cells_start_with_preemption_signals_ignored() -> None:
    """SLURM cells start Python through `preemption_safe_python`: a signal that arrives before
    submitit's handler exists is ignored instead of killing the cell."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGUSR1); os.kill(os.getpid(), signal.SIGUSR2); print('started')"
    launched = subprocess.run(f"{preemption_safe_python()} -c {shlex.quote(code)}", shell=True, capture_output=True, text=True)
    assert (launched.returncode, launched.stdout.strip()) == (0, "started"), launched.stderr
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert bare.returncode == -signal.SIGUSR1  # what the launch line prevents


@pytest.mark.slow
def test_inline_sweep_with_the_real_trainer(tmp_path: Path, tiny_synthshop: Path) -> None:
    from support.configs import tiny_run_config

    base = tiny_run_config(tiny_synthshop, tmp_path / "ignored", train={"epochs": 1, "lr": 1e-3})
    sweep = sweep_from_dict(
        {
            "name": "e2e",
            "output_dir": str(tmp_path / "out"),
            "base": base,
            "grid": {"loss": ["bdl", "batch-hard"]},
            "include": [{"data.root": str(tmp_path / "missing")}],
            "executor": {"kind": "inline"},
        }
    )
    report = run_sweep(sweep, log=lambda _: None)
    assert report.failed == [report.cells[-1].run_id]
    for cell in report.cells[:2]:
        metrics = rundir.read_json(sweep.runs_dir / cell.run_id / rundir.METRICS)
        assert metrics["run_id"] == cell.run_id and 0.0 <= metrics["layers"]["emb"]["recall@1"] <= 1.0
    error = [s for s in cell_statuses(sweep, report.cells) if s.state == "failed"]
    assert len(error) == 1 and "missing" in (error[0].error or "")
