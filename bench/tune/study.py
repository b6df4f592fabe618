"""The Optuna side of tuning: one study per method in the tune folder's journal file, ask/tell, and the
trial bookkeeping that makes a re-run resume without losing or duplicating trials.

The journal (Optuna's JournalFileStorage) is an append-only log with file locks, so it works on shared
filesystems where SQLite does not. A trial is asked before its cells are submitted: its params are drawn
first and the trial is written with all of them in one journal record, so a killed `tune` never leaves
a trial with part of its params; a re-run finds it RUNNING and resumes its cells instead of asking anew.
A RUNNING trial that lacks params all the same (a journal written before this rule) is abandoned (FAIL,
marked `INCOMPLETE`, outside the budget) and asked anew: it never ran, and is never run with base-config
values for the params it lacks. The budget counts every other asked trial, whatever its state, so no
method ever gets more than `trials`.
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
INCOMPLETE = "dmlbench_incomplete"  # user attribute of a trial abandoned for lacking params (never ran)
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


def remove_stale_journal_lock(out: Path) -> bool:
    """Remove the journal's lock file left by a `tune` killed while appending (Optuna would wait 30 s for
    it). Call only under the tune folder's lock: the tune loop is the journal's only writer."""
    lock = out / f"{JOURNAL_FILE}.lock"
    try:
        lock.unlink()
    except FileNotFoundError:
        return False
    return True


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count against the budget: all but those abandoned for lacking params."""
    return [t for t in trials if INCOMPLETE not in t.user_attrs]


def ask(spec: TuneSpec, study: optuna.Study, method: Method) -> FrozenTrial:
    """A new trial of `method`, its params drawn and written to the journal, all in one record, before
    anything runs. The sampler proposes in an in-memory copy of the study (same trials, same seeded
    sampler), so nothing reaches the journal until the whole parameter set is known."""
    trials = study.get_trials(deepcopy=False)
    draft = optuna.create_study(sampler=tpe_sampler(spec, method, len(counted(trials))), direction="maximize")
    draft.add_trials(trials)
    proposal = draft.ask(dict(method.space))
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.RUNNING, params=proposal.params, distributions=proposal.distributions)
    )
    return study.get_trials(deepcopy=False)[-1]


def missing_params(trial: FrozenTrial, method: Method) -> list[str]:
    """The keys of `method`'s space that `trial` lacks (a trial asked by an older dmlbench, killed mid-ask)."""
    return sorted(set(method.space) - set(trial.params))


def abandon(study: optuna.Study, trial: FrozenTrial, why: str) -> None:
    """Mark a trial that never ran (params incomplete) FAIL and outside the budget."""
    study._storage.set_trial_user_attr(trial._trial_id, INCOMPLETE, why)
    study.tell(trial.number, state=TrialState.FAIL)


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
    """done / failed / running and the best value so far, for status and the protocol table (trials
    abandoned for lacking params never ran: not counted)."""
    trials = counted(trials)
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
