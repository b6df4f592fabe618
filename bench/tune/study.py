"""The Optuna side of tuning: one study per method in the tune folder's journal file, ask/tell, and the
trial bookkeeping that makes a re-run resume without losing or duplicating trials.

The journal (Optuna's JournalFileStorage) is an append-only log with file locks, so it works on shared
filesystems where SQLite does not. A trial is asked (and so written to the journal, params included)
before its cells are submitted; a re-run finds it RUNNING and resumes its cells instead of asking anew.
The budget counts every asked trial, whatever its state, so no method ever gets more than `trials`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from dmlbench.tune.spec import Method, TuneSpec

JOURNAL_FILE = "study.journal"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)

optuna.logging.set_verbosity(logging.WARNING)  # our own log lines say what happened to each trial


def journal_storage(out: Path) -> JournalStorage:
    out.mkdir(parents=True, exist_ok=True)
    path = str(out / JOURNAL_FILE)
    # The open-lock (O_EXCL lock file) works on NFS and the like, where symlink locks may not.
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def open_studies(spec: TuneSpec, storage: JournalStorage | None = None) -> dict[str, optuna.Study]:
    """Method name -> its study (created on the first run, loaded on a re-run)."""
    storage = storage or journal_storage(spec.output_dir)
    studies = {}
    for method in spec.methods:
        studies[method.name] = optuna.create_study(
            storage=storage, study_name=method.name, sampler=tpe_sampler(spec, method, 0), direction="maximize", load_if_exists=True
        )
    return studies


def tpe_sampler(spec: TuneSpec, method: Method, number: int) -> optuna.samplers.TPESampler:
    """The sampler that proposes trial `number` of `method`, seeded by (seed, method, number): a resumed
    study does not replay the random draws of its first trials (a sampler seeded once per process would
    propose trial 0's configuration again after a restart)."""
    index = [m.name for m in spec.methods].index(method.name)
    seed = (spec.seed * 1_000_003 + index * 10_007 + number) % 2**32
    # constant_liar: trials in flight count as bad results, so parallel asks spread out
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials, constant_liar=True)


def existing_studies(out: Path) -> dict[str, list[FrozenTrial]]:
    """Method name -> its trials, read from the tune folder's journal (empty when there is none yet)."""
    if not (out / JOURNAL_FILE).is_file():
        return {}
    storage = journal_storage(out)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
        for s in optuna.get_all_study_summaries(storage)
    }


def ask(spec: TuneSpec, study: optuna.Study, method: Method) -> optuna.Trial:
    """A new trial of `method`, its params drawn (and written to the journal) before anything runs."""
    study.sampler = tpe_sampler(spec, method, len(study.get_trials(deepcopy=False)))
    return study.ask(dict(method.space))


def tell(study: optuna.Study, number: int, value: float | None) -> None:
    """A mean over the folds, or None (a fold failed): FAIL, which still counts against the budget."""
    if value is None or not math.isfinite(value):
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, value)


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    # highest value; the earlier trial on a tie, so the choice never depends on completion order
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def trial_counts(trials: list[FrozenTrial]) -> dict[str, Any]:
    """done / failed / running and the best value so far, for status and the protocol table."""
    best = best_trial(trials)
    return {
        "asked": len(trials),
        "done": sum(t.state == TrialState.COMPLETE for t in trials),
        "failed": sum(t.state in (TrialState.FAIL, TrialState.PRUNED) for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "best": None if best is None else best.value,
        "best_trial": None if best is None else best.number,
        "best_params": {} if best is None else dict(best.params),
    }
