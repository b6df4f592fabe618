"""A sweep file parsed and checked: the `Sweep` and its `ExecutorSpec` (defaults < profile < the
sweep's executor section < the command line), the sweep output folder's file names, and `SweepError`."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import yaml

from dmlbench.config.io import load_yaml, read_yaml_file
from dmlbench.config.keys import normalise_key
from dmlbench.errors import SweepError, did_you_mean

EXECUTOR_KINDS = ("slurm", "local", "inline")
SWEEP_KEYS = ("name", "output_dir", "base", "grid", "include", "exclude", "executor")
# Our own executor settings, consumed here and never passed to submitit.
OWN_EXECUTOR_KEYS = ("kind", "profile", "local_parallelism", "max_array_size")
# submitit settings taken by the AutoExecutor constructor rather than by update_parameters.
CONSTRUCTOR_KEYS = ("slurm_max_num_timeout", "local_max_num_timeout", "slurm_python")
DEFAULT_TIMEOUT_MIN = 60  # submitit's own defaults (5 min on SLURM, 2 min locally) are too short to train
# The sweep output folder: the expanded sweep, run folders, run_id -> job id, submitit logs, the lock.
SWEEP_FILE = "sweep.yaml"
JOBS_FILE = "jobs.json"
RUNS_DIR = "runs"
SUBMITIT_DIR = "submitit"
LOCK_FILE = ".sweep.lock"


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
    source: Path | None = None  # the file it was read from (load_sweep)

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
    data = read_yaml_file(path, SweepError, "executor profile") or {}
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
            raise SweepError(f"unknown executor setting '{key}' in {where}{did_you_mean(key, valid)}")


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
            raise SweepError(f"unknown sweep key '{key}'{did_you_mean(key, SWEEP_KEYS)}; valid keys: {', '.join(SWEEP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise SweepError(f"a sweep needs a 'name' (a string without '/'), got {name!r}")
    base = data.get("base") or {}
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() or sweep_dir is None else sweep_dir / base
        base = read_yaml_file(base_path, SweepError, "base config") or {}
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
    data = read_yaml_file(path, SweepError, "sweep file") or {}
    sweep = sweep_from_dict(data, sweep_dir=path.parent, executor=executor, profile=profile)
    if folder is not None:
        sweep.output_dir = folder  # the folder may have moved since it was written
    sweep.source = path
    return sweep


def check_output_dir(sweep: Sweep) -> None:
    """Refuse an output_dir whose writes would destroy something: the sweep file itself (a hand-written
    `sweep.yaml` with `output_dir: .` would be replaced by the expanded spec, comments lost) or the
    installed dmlbench package's own source tree."""
    out = sweep.output_dir.resolve()
    package = Path(__file__).resolve().parents[1]
    if out == package or out.is_relative_to(package):
        raise SweepError(
            f"output_dir {sweep.output_dir} lies inside the dmlbench package ({package}): choose a folder "
            "outside it (default sweeps/<name> under the working directory)"
        )
    source = sweep.source
    written = out / SWEEP_FILE
    if source is None or not written.is_file() or not source.is_file() or not written.samefile(source):
        return
    text = source.read_text(errors="replace")
    with contextlib.suppress(yaml.YAMLError, ValueError):
        if text == yaml.safe_dump(load_yaml(text), sort_keys=False):
            return  # the expanded spec a sweep wrote there itself: rewriting it loses nothing
    raise SweepError(
        f"output_dir {sweep.output_dir} would overwrite the sweep file {source} with the expanded sweep "
        f"(its comments and layout lost): set output_dir to another folder, e.g. sweeps/{sweep.name}"
    )
