"""Sweeps: one YAML file -> a grid of runs -> SLURM job arrays, local processes, or an in-process loop.

A sweep file::

    name: ablation
    output_dir: sweeps/ablation         # default sweeps/<name> (relative to the working directory)
    base: ../configs/inshop.yaml        # a config mapping, or a config YAML path relative to this file
    grid:                               # cartesian product: dotted config key -> list of values
      loss.name: [bdl, sbdl]            # shorthands: loss, sampler (-> .name), dataset (-> data.dataset)
      seed: [0, 1, 2]
    exclude:                            # drop every grid cell matching all keys of any rule
      - {loss.name: sbdl, seed: 2}
    include:                            # extra cells: base + these keys (never excluded)
      - {loss.name: multi-similarity, loss.params: {alpha: 2.0}}
    executor:                           # kind: slurm | local | inline; profile: slurm/profiles/NAME.yaml
      kind: slurm                       # or a bare NAME; other keys are submitit parameters that
      profile: gpu-example              # override the profile's (timeout_min, slurm_partition, ...)
      slurm_array_parallelism: 8

Outputs (``<output_dir>/``): ``sweep.yaml`` (the expanded sweep as submitted: base inline, executor
resolved), ``runs/<run_id>/`` (one run folder per cell, ``cell.json`` written before submission),
``jobs.json`` (run_id -> job id, rewritten atomically after each submission), ``submitit/%j/`` (logs).

Re-running a sweep is idempotent: cells with DONE are skipped, cells whose job is still pending or
running in SLURM are left alone, and everything else (failed, interrupted, cancelled, never submitted)
is submitted again and resumes from its checkpoint. Each cell's job is `CellJob`, a submitit
`Checkpointable`: on SLURM's timeout signal (USR2, `slurm_signal_delay_s` before the limit) or on a
preemption signal (USR1 or USR2) it requeues itself, and `train_run` resumes after the last epoch.

Execution kinds: ``slurm`` submits job arrays and returns; ``local`` runs each cell in its own
subprocess through submitit's LocalExecutor (``local_parallelism`` at a time) and waits; ``inline``
runs the cells one after the other in this process (debugging, tests, the quick start).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import importlib
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import yaml
from submitit.helpers import Checkpointable, DelayedSubmission

from dmlbench import rundir
from dmlbench.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_yaml,
    run_id,
)
from dmlbench.registry import closest

DEFAULT_RUNNER = "dmlbench.train:train_run"
EXECUTOR_KINDS = ("slurm", "local", "inline")
SWEEP_KEYS = ("name", "output_dir", "base", "grid", "include", "exclude", "executor")
# Our own executor settings, consumed here and never passed to submitit.
OWN_EXECUTOR_KEYS = ("kind", "profile", "local_parallelism", "max_array_size")
# submitit settings taken by the AutoExecutor constructor rather than by update_parameters.
CONSTRUCTOR_KEYS = ("slurm_max_num_timeout", "local_max_num_timeout", "slurm_python")
DEFAULT_TIMEOUT_MIN = 60  # submitit's own defaults (5 min on SLURM, 2 min locally) are too short to train
KEY_ALIASES = {"loss": "loss.name", "sampler": "sampler.name", "dataset": "data.dataset"}
SWEEP_FILE = "sweep.yaml"
JOBS_FILE = "jobs.json"
RUNS_DIR = "runs"
SUBMITIT_DIR = "submitit"
LOCK_FILE = ".sweep.lock"
# SLURM states in which a job will still run (or runs): its cell must not be submitted again.
ACTIVE_PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD", "SUSPENDED"})
ACTIVE_RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})
# failed / cancelled / interrupted / unsubmitted cells are all submitted again by a re-run.
STATES = ("done", "running", "pending", "failed", "cancelled", "interrupted", "unsubmitted")


class SweepError(ValueError):
    """A sweep that cannot be expanded or submitted: raised before anything is submitted."""


@dataclass
class ExecutorSpec:
    kind: str = "local"
    profile: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # profile values overridden by the sweep's


@dataclass
class Sweep:
    name: str
    output_dir: Path
    base: dict[str, Any]  # a config mapping (the base file, if any, already read)
    grid: dict[str, list[Any]]  # normalised dotted keys
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def to_dict(self) -> dict[str, Any]:
        """The expanded sweep file as submitted (what `sweep.yaml` holds)."""
        executor = {"kind": self.executor.kind, **({"profile": self.executor.profile} if self.executor.profile else {})}
        return {
            "name": self.name,
            "output_dir": str(self.output_dir),
            "base": self.base,
            "grid": self.grid,
            "include": self.include,
            "exclude": self.exclude,
            "executor": {**executor, **self.executor.params},
        }

    @property
    def runs_dir(self) -> Path:
        return self.output_dir / RUNS_DIR


@dataclass(frozen=True)
class Cell:
    grid: dict[str, Any]  # the cell's coordinates: dotted key -> value
    config: Config
    run_id: str


# ------------------------------------------------------------------------------------ parsing


def normalise_key(key: str) -> str:
    """Dotted config key with the sweep shorthands resolved.

    >>> normalise_key("loss"), normalise_key("dataset"), normalise_key("loss.params.alpha")
    ('loss.name', 'data.dataset', 'loss.params.alpha')
    """
    return KEY_ALIASES.get(key, key)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SweepError(f"{what} must be a mapping, got {value!r}")
    return value


def _rules(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(r, dict) and r for r in value):
        raise SweepError(f"'{what}' must be a list of non-empty mappings (dotted key -> value), got {value!r}")
    return [{normalise_key(str(k)): v for k, v in rule.items()} for rule in value]


def find_profile(name: str, sweep_dir: Path | None) -> Path:
    """A profile path as given, else relative to the sweep file, else `slurm/profiles/NAME.yaml`
    under the working directory or this repository."""
    given = Path(name)
    candidates = [given]
    if not given.is_absolute() and sweep_dir is not None:
        candidates.append(sweep_dir / given)
    if given.suffix not in (".yaml", ".yml") and len(given.parts) == 1:
        repo = Path(__file__).resolve().parents[2]
        candidates += [Path("slurm/profiles") / f"{name}.yaml", repo / "slurm" / "profiles" / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise SweepError(f"executor profile '{name}' not found (looked at: {', '.join(str(p) for p in candidates)})")


def load_profile(name: str, sweep_dir: Path | None) -> dict[str, Any]:
    path = find_profile(name, sweep_dir)
    data = load_yaml(path.read_text()) or {}
    return dict(_mapping(data, f"profile {path}"))


def valid_executor_keys() -> list[str]:
    """Every key an `executor` section or profile may hold: ours plus submitit's (generic or prefixed)."""
    keys = set(OWN_EXECUTOR_KEYS) | set(CONSTRUCTOR_KEYS) | set(submitit.AutoExecutor._valid_parameters())
    for prefix, executor in submitit.core.plugins.get_executors().items():
        keys |= {f"{prefix}_{p}" for p in executor._valid_parameters()}
    return sorted(keys)


def check_executor_params(params: dict[str, Any], where: str) -> None:
    valid = valid_executor_keys()
    for key in params:
        if key not in valid:
            hint = closest(key, valid)
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            raise SweepError(f"unknown executor setting '{key}' in {where}{did_you_mean}")


def resolve_executor(
    section: dict[str, Any], sweep_dir: Path | None, *, kind: str | None = None, profile: str | None = None
) -> ExecutorSpec:
    """defaults < profile < the sweep's executor settings; `kind`/`profile` (the CLI) win over the file's."""
    section = dict(_mapping(section or {}, "'executor'"))
    check_executor_params(section, "the sweep's executor section")
    kind = kind or section.pop("kind", None) or "local"
    section.pop("kind", None)
    profile = profile or section.pop("profile", None)
    section.pop("profile", None)
    if kind not in EXECUTOR_KINDS:
        raise SweepError(f"executor kind must be one of {', '.join(EXECUTOR_KINDS)}, not '{kind}'")
    params: dict[str, Any] = {"timeout_min": DEFAULT_TIMEOUT_MIN}
    if profile:
        from_profile = load_profile(profile, sweep_dir)
        check_executor_params(from_profile, f"profile '{profile}'")
        params.update({k: v for k, v in from_profile.items() if k not in ("kind", "profile")})
    params.update(section)
    return ExecutorSpec(kind=kind, profile=profile, params=params)


def sweep_from_dict(
    data: dict[str, Any],
    *,
    sweep_dir: Path | None = None,
    executor: str | None = None,
    profile: str | None = None,
) -> Sweep:
    """Parse and check a sweep mapping; `sweep_dir` anchors a relative `base` path and profile."""
    data = copy.deepcopy(_mapping(data, "a sweep file"))
    for key in data:
        if key not in SWEEP_KEYS:
            hint = closest(key, SWEEP_KEYS)
            did_you_mean = f"; did you mean '{hint}'?" if hint else f"; valid keys: {', '.join(SWEEP_KEYS)}"
            raise SweepError(f"unknown sweep key '{key}'{did_you_mean}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise SweepError(f"a sweep needs a 'name' (a string without '/'), got {name!r}")
    base = data.get("base") or {}
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() or sweep_dir is None else sweep_dir / base
        if not base_path.is_file():
            raise SweepError(f"base config not found: {base_path}")
        base = load_yaml(base_path.read_text()) or {}
    base = _mapping(base, "'base'")
    grid_raw = _mapping(data.get("grid") or {}, "'grid'")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid '{key}' must be a non-empty list of values, got {values!r}")
        norm = normalise_key(str(key))
        if norm in grid:
            raise SweepError(f"grid key '{key}' given twice (as '{norm}')")
        grid[norm] = values
    return Sweep(
        name=name,
        output_dir=Path(data.get("output_dir") or Path("sweeps") / name),
        base=base,
        grid=grid,
        include=_rules(data.get("include"), "include"),
        exclude=_rules(data.get("exclude"), "exclude"),
        executor=resolve_executor(data.get("executor") or {}, sweep_dir, kind=executor, profile=profile),
    )


def load_sweep(path: str | Path, *, executor: str | None = None, profile: str | None = None) -> Sweep:
    """Read a sweep file, or the `sweep.yaml` of a sweep output folder (whose location then wins)."""
    path = Path(path)
    if not path.exists():
        from dmlbench.presets import preset_path

        preset = preset_path(str(path))  # a bare preset name: `dmlbench sweep sgml-inshop`
        path = preset if preset is not None else path
    folder = path if path.is_dir() else None
    if folder is not None:
        path = folder / SWEEP_FILE
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SweepError(f"{path} is not valid YAML: {err}") from err
    sweep = sweep_from_dict(data, sweep_dir=path.parent, executor=executor, profile=profile)
    if folder is not None:
        sweep.output_dir = folder  # the folder may have moved since it was written
    return sweep


# ------------------------------------------------------------------------------------ expansion


def _lookup(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _ordered(overrides: dict[str, Any]) -> dict[str, Any]:
    """`*.name` first: choosing another loss/sampler resets its params, which must not wipe the cell's own."""
    return dict(sorted(overrides.items(), key=lambda kv: not kv[0].endswith(".name")))


def _describe(grid: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in grid.items()) or "(base)"


def _check_rule_keys(sweep: Sweep, base_dict: dict[str, Any]) -> None:
    """An `exclude` key that names nothing would silently exclude nothing: a typo must fail."""
    for rule in sweep.exclude:
        for key in rule:
            if key in sweep.grid:
                continue
            try:
                _lookup(base_dict, key)
            except KeyError:
                hint = closest(key, list(sweep.grid))
                did_you_mean = f"; did you mean '{hint}'?" if hint else ""
                raise SweepError(f"exclude rule key '{key}' is neither a grid key nor a config key{did_you_mean}") from None


def _matches(rule: dict[str, Any], cell_values: dict[str, Any]) -> bool:
    return all(cell_values.get(k, object()) == v for k, v in rule.items())


def iter_grid(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Cartesian product in file order, the last key varying fastest.

    >>> list(iter_grid({"a": [1, 2], "b": ["x", "y"]}))
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def expand(sweep: Sweep, *, validate: bool = True) -> list[Cell]:
    """Every cell of the sweep, each with its resolved Config and run_id.

    With `validate`, every config's registry names and parameters are checked (dmlbench.train.check_names)
    before anything is submitted; the error names the cell. Cells that resolve to the same run
    (include duplicating a grid cell) are kept once.
    """
    try:
        base_cfg = config_from_dict(sweep.base)
    except ConfigError as err:
        raise SweepError(f"sweep '{sweep.name}' base config: {err}") from None
    base_cfg.output_dir = str(sweep.runs_dir.resolve())
    base_dict = config_to_dict(base_cfg)
    _check_rule_keys(sweep, base_dict)
    check = _name_checker() if validate else None

    cells: list[Cell] = []
    seen: dict[str, dict[str, Any]] = {}

    def add(overrides: dict[str, Any], from_grid: bool) -> None:
        try:
            cfg = apply_overrides(base_cfg, _ordered(overrides)) if overrides else copy.deepcopy(base_cfg)
            if check is not None:
                check(cfg)
        except (ConfigError, ValueError, KeyError) as err:
            raise SweepError(f"sweep '{sweep.name}', cell [{_describe(overrides)}]: {str(err).strip(chr(34))}") from None
        rid = run_id(cfg)
        if rid in seen:
            if from_grid and seen[rid] != overrides:
                raise SweepError(
                    f"sweep '{sweep.name}': cells [{_describe(seen[rid])}] and [{_describe(overrides)}] are the same run "
                    f"({rid}); they differ only in keys that do not change results (e.g. train.device)"
                )
            return
        seen[rid] = overrides
        coords = overrides
        if not from_grid:
            # include cells also get every grid coordinate, so result tables see uniform columns
            cfg_dict = config_to_dict(cfg)
            coords = {**{k: _safe_lookup(cfg_dict, k) for k in sweep.grid}, **overrides}
        cells.append(Cell(grid=coords, config=cfg, run_id=rid))

    for point in iter_grid(sweep.grid):
        if any(_matches(rule, _cell_values(point, base_dict, rule)) for rule in sweep.exclude):
            continue
        add(point, from_grid=True)
    for extra in sweep.include:
        add(extra, from_grid=False)
    return cells


def _safe_lookup(data: dict[str, Any], key: str) -> Any:
    try:
        return _lookup(data, key)
    except KeyError:
        return None


def _cell_values(point: dict[str, Any], base_dict: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """The values a rule is compared against: the grid point, else the base config's value."""
    values = dict(point)
    for key in rule:
        if key not in values:
            values[key] = _safe_lookup(base_dict, key)
    return values


def _name_checker() -> Callable[[Config], None]:
    """dmlbench.train.check_names, memoised: a 1,000-cell grid usually has a handful of distinct name sets."""
    from dmlbench.train import check_names  # imports torch: only when validating

    seen: set[str] = set()

    def check(cfg: Config) -> None:
        key = json.dumps(
            [cfg.plugins, cfg.loss.name, cfg.loss.params, cfg.sampler.name, cfg.sampler.params, cfg.data.dataset,
             cfg.data.options, cfg.model.backbone, cfg.train.optimizer, cfg.train.lr_schedule, cfg.train.amp,
             cfg.eval.layers],
            sort_keys=True, default=str,
        )
        if key not in seen:
            check_names(cfg)
            seen.add(key)

    return check


# ------------------------------------------------------------------------------------ the job


def resolve_runner(spec: str) -> Callable[..., dict[str, Any]]:
    """'package.module:function' -> the function (imported in the job's own process)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"runner must look like 'package.module:function', got '{spec}'")
    return getattr(importlib.import_module(module), attr)


def error_summary(err: BaseException) -> str:
    """One line for `status`: the exception type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_cell(config_data: dict[str, Any], run_dir: str | Path, runner: str = DEFAULT_RUNNER) -> dict[str, Any]:
    """Run one cell into its folder. A finished folder is never touched; a failure leaves error.txt
    (first line: the error, then the traceback) and re-raises, so the scheduler also records it."""
    run_dir = Path(run_dir)
    if rundir.is_done(run_dir):
        return {"run_id": run_dir.name, "skipped": "already done"}
    run_dir.mkdir(parents=True, exist_ok=True)
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_JOB_ID", job) + "_" + os.environ.get("SLURM_ARRAY_TASK_ID", "")
        rundir.append_log(run_dir, f"sweep: SLURM job {task.rstrip('_')} starting (restart {os.environ.get('SLURM_RESTART_COUNT', '0')})")
    try:
        cfg = config_from_dict(config_data)
        result = resolve_runner(runner)(cfg, run_dir, progress=False)
    except Exception as err:
        rundir.atomic_write_text(run_dir / rundir.ERROR, error_summary(err) + "\n\n" + traceback.format_exc())
        raise
    (run_dir / rundir.ERROR).unlink(missing_ok=True)  # an earlier attempt's error no longer applies
    return result


PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class PreemptOnce:
    """Runs submitit's checkpoint-and-requeue handler once, in the job's own process.

    A preemption signal reaches the task's whole process group, more than once: slurmstepd signals
    the task and its group, and `scancel --signal` retries for about a minute while SLURM answers
    "Job can not be altered now", delivering the signal on every try. Without this guard, forked
    DataLoader workers (which inherit the handler) would requeue the job and exit, a second call
    would checkpoint and requeue twice, and a repeat would kill `scontrol requeue` itself."""

    def __init__(self, handler: Callable[[int, Any], None]) -> None:
        self.handler = handler
        self.pid = os.getpid()
        self.fired = False

    def __call__(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:  # a forked DataLoader worker: the job's main process handles it
            return
        if self.fired:
            print(f"dmlbench: {signal.Signals(signum).name} again: already checkpointing and requeueing", file=sys.stderr)
            return
        self.fired = True
        for sig in PREEMPTION_SIGNALS:  # ignored from now on, also by `scontrol requeue` (SIG_IGN survives exec)
            signal.signal(sig, signal.SIG_IGN)
        self.handler(signum, frame)


def _route_preemption_to_submitit() -> None:
    """Inside a submitit job, make SIGUSR1 do what submitit's preemption signal (USR2) does:
    checkpoint and requeue, once per job. Clusters and operators use either signal."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        handler = signal.getsignal(signal.SIGUSR2)
        if type(getattr(handler, "__self__", None)).__name__ == "SignalHandler":
            once = PreemptOnce(handler)  # type: ignore[arg-type]
            for sig in PREEMPTION_SIGNALS:
                signal.signal(sig, once)


class CellJob(Checkpointable):
    """One sweep cell as a submitit job. All state lives in the run folder (checkpoint.pt is written
    every epoch), so checkpointing only has to resubmit the same call: the resumed job calls the
    runner again, which resumes after the last completed epoch."""

    def __init__(self, runner: str = DEFAULT_RUNNER) -> None:
        self.runner = runner

    def __call__(self, config_data: dict[str, Any], run_dir: str) -> dict[str, Any]:
        _route_preemption_to_submitit()
        return run_cell(config_data, run_dir, self.runner)

    def checkpoint(self, config_data: dict[str, Any], run_dir: str) -> DelayedSubmission:
        with contextlib.suppress(OSError):
            rundir.append_log(Path(run_dir), "sweep: preempted or out of time; requeueing (resumes from the last checkpoint)")
        return DelayedSubmission(self, config_data, run_dir)


# ------------------------------------------------------------------------------------ scheduler queries


def _run(cmd: list[str], timeout: float = 60) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def slurm_available() -> bool:
    return shutil.which("squeue") is not None


def squeue_states() -> dict[str, str]:
    """Job id (array tasks as ARRAY_TASK) -> state, for this user's queued and running jobs."""
    user = os.environ.get("USER") or _run(["id", "-un"]).strip()
    out = _run(["squeue", "-r", "-h", "-u", user, "-o", "%i|%T"])
    states: dict[str, str] = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    return states


def sacct_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Final states of finished jobs (array tasks as ARRAY_TASK; tasks that never ran may appear only
    under the array's base id), e.g. CANCELLED, TIMEOUT, FAILED."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)])
    states: dict[str, str] = {}
    collapsed: dict[str, str] = {}  # tasks that never started share one row: 123_[1-5%4]
    for line in out.splitlines():
        job, _, state = line.partition("|")
        value = state.split()[0] if state.strip() else "UNKNOWN"
        for task in expand_task_ids(job.strip()):
            (collapsed if "[" in job else states)[task] = value
    return {**collapsed, **states}


def expand_task_ids(job: str) -> list[str]:
    """sacct/squeue array notation -> one id per task.

    >>> expand_task_ids("123_[0-2,5%4]"), expand_task_ids("123_7"), expand_task_ids("124")
    (['123_0', '123_1', '123_2', '123_5'], ['123_7'], ['124'])
    """
    base, sep, spec = job.partition("_[")
    if not sep:
        return [job]
    tasks: list[str] = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        tasks += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


# ------------------------------------------------------------------------------------ status


@dataclass
class CellStatus:
    run_id: str
    state: str  # one of STATES
    grid: dict[str, Any]
    job_id: str | None = None
    error: str | None = None  # first line of the error, for failed cells


def read_jobs(out: Path) -> dict[str, str]:
    path = out / JOBS_FILE
    return rundir.read_json(path) if path.is_file() else {}


def first_error_line(run_dir: Path) -> str:
    """The summary line of error.txt (or the last line of a bare traceback)."""
    lines = [ln.strip() for ln in (run_dir / rundir.ERROR).read_text(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return "(empty error.txt)"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def cell_statuses(sweep: Sweep, cells: Sequence[Cell], *, query_scheduler: bool = True) -> list[CellStatus]:
    """done / running / pending / failed / cancelled / interrupted / unsubmitted per cell, from the run
    folders, jobs.json, and (for SLURM sweeps) squeue + sacct. A run's own error.txt wins over the
    scheduler's verdict: a cell whose run failed is `failed` even if its job was later cancelled."""
    jobs = read_jobs(sweep.output_dir)
    slurm_ids = {rid: j for rid, j in jobs.items() if not j.startswith("local:")}
    ask_slurm = bool(query_scheduler and slurm_ids and slurm_available())
    live = squeue_states() if ask_slurm else {}
    out: list[CellStatus] = []
    need_sacct: list[CellStatus] = []
    for cell in cells:
        folder = sweep.runs_dir / cell.run_id
        job = jobs.get(cell.run_id)
        status = CellStatus(cell.run_id, "unsubmitted", cell.grid, job)
        if (folder / rundir.DONE).is_file():
            status.state = "done"
        elif job in live and live[job] in ACTIVE_RUNNING:
            status.state = "running"
        elif job in live:
            status.state = "pending"
        elif (folder / rundir.ERROR).is_file():
            status.state, status.error = "failed", first_error_line(folder)
        elif ask_slurm and cell.run_id in slurm_ids:
            need_sacct.append(status)
        elif job is not None or (folder / rundir.CONFIG).is_file():
            status.state = "interrupted"
        out.append(status)
    if need_sacct:
        final = sacct_states([s.job_id for s in need_sacct if s.job_id])
        for status in need_sacct:
            job = status.job_id or ""
            # an array whose remaining tasks never started is reported as one row under its base id
            state = final.get(job) or final.get(job.split("_")[0], "UNKNOWN")
            if state == "COMPLETED":
                status.state, status.error = "failed", "SLURM job COMPLETED but the run has no DONE marker"
            elif state in ("UNKNOWN", "PENDING", "RUNNING"):
                # sacct lags squeue by a second or two; a vanished job with no record was interrupted
                status.state = "interrupted"
            elif state.rstrip("+") == "CANCELLED":  # sacct: "CANCELLED by <uid>" (first word kept), or "CANCELLED+"
                status.state, status.error = "cancelled", "SLURM job CANCELLED"
            else:
                status.state, status.error = "failed", f"SLURM job {state}"
    return out


def sweep_status(target: str | Path) -> tuple[Sweep, list[CellStatus]]:
    sweep = load_sweep(target)
    return sweep, cell_statuses(sweep, expand(sweep, validate=False))


def cancel_sweep(target: str | Path) -> list[str]:
    """scancel this sweep's queued and running jobs; returns the job ids cancelled."""
    sweep, statuses = sweep_status(target)
    if sweep.executor.kind != "slurm":
        raise SweepError(f"sweep '{sweep.name}' ran with the {sweep.executor.kind} executor: nothing queued to cancel")
    active = [s.job_id for s in statuses if s.state in ("running", "pending") and s.job_id]
    if active:
        _run(["scancel", *active])
    return active


# ------------------------------------------------------------------------------------ submission


@dataclass
class SweepReport:
    sweep: Sweep
    cells: list[Cell]
    before: list[CellStatus]  # state of every cell when the command started
    submitted: dict[str, str] = field(default_factory=dict)  # run_id -> job id
    failed: list[str] = field(default_factory=list)  # run_ids that failed in a waited (local/inline) run
    dry_run: bool = False


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Two `dmlbench sweep` commands on the same folder must not both submit the same cells."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_cell_files(sweep: Sweep, cells: Sequence[Cell]) -> None:
    for cell in cells:
        path = sweep.runs_dir / cell.run_id / rundir.CELL
        content = {"sweep": sweep.name, "grid": cell.grid}
        if path.is_file():
            with contextlib.suppress(ValueError):
                if rundir.read_json(path) == json.loads(json.dumps(content, default=str)):
                    continue
        rundir.atomic_write_json(path, content)


def _record_jobs(out: Path, new: dict[str, str]) -> None:
    if new:
        rundir.atomic_write_json(out / JOBS_FILE, {**read_jobs(out), **new})


def preemption_safe_python(python: str | None = None) -> str:
    """The command that starts a SLURM cell's Python (submitit's `python`), launched with USR1 and USR2
    ignored. Until submitit has installed its handler, a preemption signal would kill Python at
    startup (their default action), e.g. one of scancel's retries reaching a just-requeued cell;
    ignored instead, the cell starts normally and submitit's handler then replaces SIG_IGN.

    >>> print(preemption_safe_python("venv/bin/python"))
    /bin/sh -c 'trap "" USR1 USR2; exec "$0" "$@"' venv/bin/python
    """
    return "/bin/sh -c 'trap \"\" USR1 USR2; exec \"$0\" \"$@\"' " + (python or shlex.quote(sys.executable))


def _make_executor(sweep: Sweep, cluster: str) -> submitit.AutoExecutor:
    params = {k: v for k, v in sweep.executor.params.items() if k not in OWN_EXECUTOR_KEYS}
    ctor = {k: params.pop(k) for k in CONSTRUCTOR_KEYS if k in params}
    if cluster == "slurm":
        ctor["slurm_python"] = preemption_safe_python(ctor.get("slurm_python"))
    executor = submitit.AutoExecutor(folder=sweep.output_dir / SUBMITIT_DIR / "%j", cluster=cluster, **ctor)
    executor.update_parameters(name=f"dmlbench-{sweep.name}", **params)
    return executor


def submit_slurm(sweep: Sweep, cells: Sequence[Cell], runner: str) -> dict[str, str]:
    """One job array per chunk of `max_array_size` cells (SLURM's MaxArraySize caps arrays)."""
    executor = _make_executor(sweep, "slurm")
    chunk = int(sweep.executor.params.get("max_array_size", 1000))
    job_ids: dict[str, str] = {}
    for start in range(0, len(cells), chunk):
        part = cells[start : start + chunk]
        jobs = executor.map_array(
            CellJob(runner),
            [config_to_dict(c.config) for c in part],
            [str((sweep.runs_dir / c.run_id).resolve()) for c in part],
        )
        new = {c.run_id: str(j.job_id) for c, j in zip(part, jobs, strict=True)}
        _record_jobs(sweep.output_dir, new)  # after every array: a crash later still knows these jobs
        job_ids.update(new)
    return job_ids


def run_local(sweep: Sweep, cells: Sequence[Cell], runner: str, log: Callable[[str], None]) -> tuple[dict[str, str], list[str]]:
    """Each cell in its own subprocess (submitit LocalExecutor), `local_parallelism` at a time; waits."""
    executor = _make_executor(sweep, "local")
    parallel = max(1, int(sweep.executor.params.get("local_parallelism", 1)))
    queue = list(cells)
    running: list[tuple[Cell, Any]] = []
    job_ids: dict[str, str] = {}
    failed: list[str] = []
    while queue or running:
        while queue and len(running) < parallel:
            cell = queue.pop(0)
            job = executor.submit(CellJob(runner), config_to_dict(cell.config), str((sweep.runs_dir / cell.run_id).resolve()))
            job_ids[cell.run_id] = f"local:{job.job_id}"
            _record_jobs(sweep.output_dir, {cell.run_id: job_ids[cell.run_id]})
            running.append((cell, job))
        time.sleep(0.2)
        for cell, job in list(running):
            if job.done():
                running.remove((cell, job))
                ok = rundir.is_done(sweep.runs_dir / cell.run_id)
                if not ok:
                    failed.append(cell.run_id)
                log(f"{'done  ' if ok else 'FAILED'} {cell.run_id} [{_describe(cell.grid)}]")
    return job_ids, failed


def run_inline(sweep: Sweep, cells: Sequence[Cell], runner: str, log: Callable[[str], None]) -> list[str]:
    """The cells one after the other in this process; a failing cell is recorded and skipped."""
    failed: list[str] = []
    for i, cell in enumerate(cells, 1):
        log(f"[{i}/{len(cells)}] {cell.run_id} [{_describe(cell.grid)}]")
        try:
            run_cell(config_to_dict(cell.config), sweep.runs_dir / cell.run_id, runner)
        except Exception as err:  # recorded in the cell's error.txt by run_cell
            failed.append(cell.run_id)
            log(f"FAILED {cell.run_id}: {error_summary(err)}")
    return failed


def run_sweep(
    sweep: Sweep,
    *,
    dry_run: bool = False,
    runner: str = DEFAULT_RUNNER,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Expand, validate every cell, then submit (or run) the cells that are neither done nor queued."""
    cells = expand(sweep, validate=True)
    kind = sweep.executor.kind
    if kind == "slurm" and not slurm_available():
        raise SweepError("executor 'slurm' needs the SLURM commands (sbatch, squeue, sacct) on PATH")
    if dry_run:
        return SweepReport(sweep, cells, cell_statuses(sweep, cells), dry_run=True)
    with sweep_lock(sweep.output_dir):
        before = cell_statuses(sweep, cells)
        report = SweepReport(sweep, cells, before)
        todo_ids = {s.run_id for s in before if s.state not in ("done", "running", "pending")}
        todo = [c for c in cells if c.run_id in todo_ids]
        rundir.atomic_write_text(sweep.output_dir / SWEEP_FILE, yaml.safe_dump(sweep.to_dict(), sort_keys=False))
        _write_cell_files(sweep, todo)
        if not todo:
            return report
        if kind == "slurm":
            report.submitted = submit_slurm(sweep, todo, runner)
            return report
    # local and inline runs wait for their cells: outside the lock, so `status` stays usable meanwhile
    if kind == "local":
        report.submitted, report.failed = run_local(sweep, todo, runner, log)
    else:
        report.submitted = {c.run_id: "inline" for c in todo}
        report.failed = run_inline(sweep, todo, runner, log)
    return report


# ------------------------------------------------------------------------------------ CLI


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_status_table(statuses: Sequence[CellStatus], actions: dict[str, str] | None = None) -> str:
    rows = []
    for s in statuses:
        row = [s.state, s.run_id, s.job_id or "-", _short(_describe(s.grid))]
        if actions is not None:
            row.insert(1, actions.get(s.run_id, ""))
        rows.append(row + [s.error or ""])  # last column: the whole first line
    header = ["state", "run_id", "job", "cell", "error"]
    if actions is not None:
        header.insert(1, "action")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _counts(statuses: Sequence[CellStatus]) -> str:
    counts = Counter(s.state for s in statuses)
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "no cells"


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.file, executor=args.executor, profile=args.profile)
        report = run_sweep(sweep, dry_run=args.dry_run, runner=args.runner)
    except (SweepError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    actions = {
        s.run_id: "skip" if s.state in ("done", "running", "pending") else ("would submit" if args.dry_run else "submit")
        for s in report.before
    }
    print(f"sweep '{sweep.name}': {len(report.cells)} cells -> {sweep.runs_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(report.before, actions))
    todo = sum(a != "skip" for a in actions.values())
    print(f"before: {_counts(report.before)}; {'would submit' if args.dry_run else 'submitted'} {todo}")
    if report.submitted and sweep.executor.kind == "slurm":
        arrays = sorted({j.split("_")[0] for j in report.submitted.values()})
        print(f"SLURM job array(s): {', '.join(arrays)}; follow with: dmlbench status {sweep.output_dir}")
    if report.failed:
        print(f"{len(report.failed)} cell(s) failed: {', '.join(report.failed)} (see error.txt in their folders)")
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        sweep, statuses = sweep_status(args.sweep)
    except (SweepError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=1, default=str))
        return 0
    print(f"sweep '{sweep.name}' in {sweep.output_dir} (executor: {sweep.executor.kind})")
    print(format_status_table(statuses))
    print(_counts(statuses))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        cancelled = cancel_sweep(args.sweep)
    except (SweepError, ConfigError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"cancelled {len(cancelled)} job(s)" + (f": {' '.join(cancelled)}" if cancelled else ""))
    return 0


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="expand a sweep file and submit its unfinished cells (idempotent)")
    p.add_argument("file", help="sweep YAML (base + grid + include/exclude + executor)")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, help="override the file's executor kind")
    p.add_argument("--profile", help="executor profile YAML (e.g. slurm/profiles/local.yaml) or its bare name")
    p.add_argument("--dry-run", action="store_true", help="show what would run and what is done; submit nothing")
    p.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests: a stand-in trainer
    p.set_defaults(func=cmd_sweep)


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="done / running / pending / failed / cancelled per cell of a sweep")
    p.add_argument("sweep", help="the sweep file or its output folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


def add_cancel_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cancel", help="cancel a sweep's queued and running SLURM jobs")
    p.add_argument("sweep", help="the sweep file or its output folder")
    p.set_defaults(func=cmd_cancel)
