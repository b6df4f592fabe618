"""`run_tune`: the tuning loop (ask -> submit -> poll -> tell, `parallel` trials in flight, the same
budget per method) and the final stage (each method's best config x S seeds on test, as a sweep).

Tune folder layout (``<output_dir>/``)::

    tune.yaml        the expanded spec (a re-run must match it: same methods, spaces, budget, folds)
    study.journal    Optuna's journal: one study per method, every asked trial with its params
    trials/          the trial cells: runs/<run_id>/ (one per trial x fold), jobs.json, submitit/
    final/           a normal sweep folder (sweep.yaml, runs/): `dmlbench status/collect` read it
    protocol.json    per method: trials asked / done / failed, best validation value and params
    .tune.lock       one `dmlbench tune` per folder at a time
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import yaml

from dmlbench import rundir
from dmlbench.errors import TuneError
from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import Sweep
from dmlbench.sweep.status import cell_statuses
from dmlbench.sweep.submit import SweepReport, run_sweep
from dmlbench.tune.spec import TUNE_FILE, TuneSpec, check_spec
from dmlbench.tune.study import (
    FINISHED,
    abandon,
    ask,
    best_trial,
    counted,
    missing_params,
    open_studies,
    remove_stale_journal_lock,
    tell,
    trial_counts,
)
from dmlbench.tune.trials import ENDED, TrialWork, ended, submit, trial_cells, trial_value, trials_sweep

FINAL_DIR = "final"
PROTOCOL_FILE = "protocol.json"
LOCK_FILE = ".tune.lock"
# Keys of tune.yaml a re-run may change: where and how fast trials run, never what is compared.
RUNTIME_SPEC_KEYS = ("output_dir", "parallel", "job", "executor")
POLL_S = {"local": 0.2, "slurm": 2.0}


@contextlib.contextmanager
def tune_lock(out: Path) -> Iterator[None]:
    """Two `tune` commands on one folder would both ask trials: the second one stops at once."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuneError(f"another `dmlbench tune` is running on {out}; wait for it (or stop it) and re-run") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _protocol_part(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in RUNTIME_SPEC_KEYS}


def check_same_spec(spec: TuneSpec) -> None:
    """A tune folder holds one study: a re-run with other methods, spaces or budget must not mix into it."""
    path = spec.output_dir / TUNE_FILE
    if not path.is_file():
        return
    old = _protocol_part(yaml.safe_load(path.read_text()) or {})
    new = _protocol_part(yaml.safe_load(yaml.safe_dump(spec.to_dict(), sort_keys=False)))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise TuneError(
            f"{spec.output_dir} holds a study with a different {', '.join(changed)}; "
            "use another output_dir (`dmlbench tune ... --out DIR`) for a different protocol, or restore the spec"
        )


def final_sweep(spec: TuneSpec, best: dict[str, dict[str, Any]]) -> Sweep:
    """Each method's best params x seeds 0..S-1 on the full training split, evaluated on test. The
    base's own grid cell is excluded (`eval.split: test` matches it); the include cells are the runs."""
    include = [spec.final_overrides(m, best[m.name], s) for m in spec.methods if m.name in best for s in range(spec.seeds)]
    return Sweep(
        name=f"{spec.name}-final",
        output_dir=spec.output_dir / FINAL_DIR,
        base=spec.base,
        grid={},
        include=include,
        exclude=[{"eval.split": "test"}],
        executor=spec.executor,
    )


def write_protocol(spec: TuneSpec, studies: dict[str, optuna.Study]) -> dict[str, Any]:
    methods = {}
    for method in spec.methods:
        trials = studies[method.name].get_trials(deepcopy=False)
        methods[method.name] = trial_counts(trials)
    protocol = {
        "trials": spec.trials,
        "folds": spec.folds,
        "objective": f"{spec.metric} ({spec.layer}), mean over {spec.folds} class-disjoint validation folds of the training classes",
        "sampler": f"TPE ({spec.startup_trials} random startup trials)",
        "seeds": spec.seeds,
        "methods": methods,
    }
    rundir.atomic_write_json(spec.output_dir / PROTOCOL_FILE, protocol)
    return protocol


class TuneLoop:
    """Keeps `parallel` trials in flight; the method with the fewest asked trials is asked next, so
    the methods advance together and each stops at exactly `trials`."""

    def __init__(self, spec: TuneSpec, runner: str, log: Callable[[str], None]) -> None:
        self.spec, self.runner, self.log = spec, runner, log
        self.sweep = trials_sweep(spec)
        self.studies = open_studies(spec)
        self.methods = {m.name: m for m in spec.methods}
        self.in_flight: list[TrialWork] = []

    def asked(self, name: str) -> int:
        return len(counted(self.studies[name].get_trials(deepcopy=False)))

    def resume_running(self) -> None:
        """Trials asked by an earlier (killed) run and never told: their cells continue, no new ask. One
        lacking params (asked by an older dmlbench, killed mid-ask) never ran: abandoned and asked anew."""
        works = []
        for name, study in self.studies.items():
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                missing = missing_params(trial, self.methods[name])
                if missing:
                    why = f"asked without {', '.join(missing)} (a tune killed while asking); never ran"
                    abandon(study, trial, why)
                    self.log(f"{name} trial {trial.number}: {why}: abandoned (outside the budget), asking anew")
                    continue
                cells = trial_cells(self.spec, self.sweep, self.methods[name], trial.number, dict(trial.params))
                works.append(TrialWork(self.methods[name], trial.number, cells))
        if works:
            self.log(f"resuming {len(works)} trial(s) left running: {', '.join(f'{w.method.name}#{w.number}' for w in works)}")
            self.start(works)

    def start(self, works: list[TrialWork]) -> None:
        self.in_flight += works
        submit(self.spec, self.sweep, works, self.runner, self.log)

    def ask_more(self) -> None:
        new: list[TrialWork] = []
        while len(self.in_flight) + len(new) < self.spec.parallel:
            open_methods = [m for m in self.spec.methods if self.asked(m.name) < self.spec.trials]
            if not open_methods:
                break
            method = min(open_methods, key=lambda m: self.asked(m.name))
            trial = ask(self.spec, self.studies[method.name], method)  # params and trial: one journal record
            cells = trial_cells(self.spec, self.sweep, method, trial.number, dict(trial.params))
            new.append(TrialWork(method, trial.number, cells))
        if new:
            self.start(new)

    def collect_ended(self) -> None:
        for work in ended(self.spec, self.sweep, self.in_flight):
            self.in_flight.remove(work)
            value = trial_value(self.spec, self.sweep, work)
            study = self.studies[work.method.name]
            tell(study, work.number, value)
            best = best_trial(study.get_trials(deepcopy=False))
            shown = "FAILED (see error.txt in its run folders)" if value is None else f"{value:.4f}"
            best_text = f"{best.value:.4f} (#{best.number})" if best is not None else "-"
            done = sum(t.state in FINISHED for t in counted(study.get_trials(deepcopy=False)))
            self.log(f"{work.method.name} trial {work.number}: {self.spec.metric} {shown}; best {best_text}; {done}/{self.spec.trials} done")

    def run(self) -> None:
        self.resume_running()
        self.collect_ended()
        poll = POLL_S.get(self.spec.executor.kind, 0.0)
        while True:
            self.ask_more()
            if not self.in_flight:
                return
            if poll:
                time.sleep(poll)
            self.collect_ended()


def wait_for_final(sweep: Sweep, report: SweepReport, log: Callable[[str], None]) -> list[str]:
    """SLURM: poll the final cells until they have all stopped; returns the failed ones."""
    while True:
        statuses = cell_statuses(sweep, report.cells)
        if all(s.state in ENDED for s in statuses):
            return [s.run_id for s in statuses if s.state != "done"]
        time.sleep(POLL_S["slurm"])


def run_tune(spec: TuneSpec, *, runner: str = DEFAULT_RUNNER, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune every method under the same budget, then run the final stage; returns protocol.json's dict.
    Everything that can be checked is checked before the tune folder is created."""
    check_spec(spec)
    check_same_spec(spec)
    with tune_lock(spec.output_dir):
        rundir.atomic_write_text(spec.output_dir / TUNE_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
        remove_stale_journal_lock(spec.output_dir)  # left by a tune killed mid-append; we are the only writer
        loop = TuneLoop(spec, runner, log)
        loop.run()
        protocol = write_protocol(spec, loop.studies)
        best = {name: info["best_params"] for name, info in protocol["methods"].items() if info["best"] is not None}
        missing = [m.name for m in spec.methods if m.name not in best]
        if missing:
            log(f"no completed trial for {', '.join(missing)}: left out of the final stage (see the failed trials' error.txt)")
        if not best:
            protocol["final_failed"] = []
            return protocol
        final = final_sweep(spec, best)
        log(f"final stage: {len(best)} method(s) x {spec.seeds} seed(s) on the full training split, evaluated on test -> {final.output_dir}")
        report = run_sweep(final, runner=runner, log=log)
        failed = wait_for_final(final, report, log) if spec.executor.kind == "slurm" else report.failed
        protocol["final_failed"] = failed
        rundir.atomic_write_json(spec.output_dir / PROTOCOL_FILE, protocol)
    return protocol
