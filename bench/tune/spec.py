"""A tuning spec parsed and checked: `TuneSpec`, its `Method`s, and every check that must fail before
anything is submitted (unknown loss parameters, empty ranges, more folds than the classes allow).

A spec::

    name: synthshop-fair
    output_dir: tunes/synthshop-fair   # default tunes/<name>
    base: {...}                        # a config mapping, or a config YAML path relative to this file
    methods:                           # a loss, or loss x sampler; label defaults to loss[+sampler]
      - {loss: bdl}                    # shipped default space (dmlbench.tune.spaces)
      - loss: multi-similarity
        space: {loss.params.alpha: {low: 1, high: 4}, train.lr: {low: 1e-4, high: 1e-2, log: true}}
        set: {sampler.params.images_per_class: 4}      # fixed overrides of this method
    trials: 20                         # the same budget for every method
    folds: 3                           # class-disjoint validation folds of the training classes
    objective: {metric: map@r, layer: emb}   # mean over the folds, maximised
    parallel: 4                        # trials in flight
    job: trial                         # one job runs a trial's folds in turn; `fold`: one job per fold
    seeds: 10                          # final stage: the best config x seeds 0..S-1 on test
    seed: 0                            # seed of the folds, the tuning runs and the TPE sampler
    startup_trials: 5                  # random trials before TPE models (default trials // 4, at least 2)
    executor: {kind: local, local_parallelism: 4}   # as in a sweep file
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from dmlbench.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    get_dotted,
)
from dmlbench.config.io import read_yaml_file
from dmlbench.errors import DmlbenchError, TuneError, closest
from dmlbench.registry import import_plugins
from dmlbench.sweep.spec import ExecutorSpec, resolve_executor
from dmlbench.tune import PRESET_DIR, TUNE_FILE
from dmlbench.tune.spaces import default_space, parse_distribution

TUNE_KEYS = (
    "name", "output_dir", "base", "methods", "trials", "folds", "objective", "parallel", "job",
    "seeds", "seed", "startup_trials", "executor",
)
METHOD_KEYS = ("name", "loss", "sampler", "space", "set")
JOB_KINDS = ("trial", "fold")
# Keys a space or a method's `set` may not touch: they define the protocol, not the method.
PROTOCOL_KEYS = ("seed", "data.", "eval.")
METRIC_PATTERN = re.compile(r"map@r|r_precision|(recall|precision)@\d+")


@dataclass
class Method:
    name: str  # label in tables and the study name
    overrides: dict[str, Any]  # loss.name, sampler.name and the method's fixed `set` keys
    space: dict[str, BaseDistribution]
    space_raw: dict[str, Any]  # as written (for tune.yaml)


@dataclass
class TuneSpec:
    name: str
    output_dir: Path
    base: dict[str, Any]
    methods: list[Method]
    trials: int
    folds: int
    metric: str = "map@r"
    layer: str = "emb"
    parallel: int = 1
    job: str = "trial"
    seeds: int = 10
    seed: int = 0
    startup_trials: int = 2
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def to_dict(self) -> dict[str, Any]:
        """The expanded spec (what tune.yaml holds): every method with its space written out."""
        executor = {"kind": self.executor.kind, **({"profile": self.executor.profile} if self.executor.profile else {})}
        methods = []
        for m in self.methods:
            entry: dict[str, Any] = {"name": m.name, "loss": m.overrides["loss.name"]}
            if "sampler.name" in m.overrides:
                entry["sampler"] = m.overrides["sampler.name"]
            fixed = {k: v for k, v in m.overrides.items() if k not in ("loss.name", "sampler.name")}
            methods.append({**entry, "space": m.space_raw, **({"set": fixed} if fixed else {})})
        return {
            "name": self.name, "output_dir": str(self.output_dir), "base": self.base, "methods": methods,
            "trials": self.trials, "folds": self.folds, "objective": {"metric": self.metric, "layer": self.layer},
            "parallel": self.parallel, "job": self.job, "seeds": self.seeds, "seed": self.seed,
            "startup_trials": self.startup_trials, "executor": {**executor, **self.executor.params},
        }  # fmt: skip

    def trial_config(self, method: Method, params: dict[str, Any], fold: int) -> Config:
        """The config of one fold of one trial: validation fold `fold`, evaluated on it, never on test."""
        fixed = {"data.folds": self.folds, "data.fold": fold, "eval.split": "val", "seed": self.seed}
        return apply_overrides(config_from_dict(self.base), {**method.overrides, **params, **fixed})

    def final_overrides(self, method: Method, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """One final-stage cell: the method's best params on the full training split, evaluated on test."""
        return {"name": method.name, **method.overrides, **params, "seed": seed}


def _int(data: dict[str, Any], key: str, default: int | None, least: int) -> int:
    value = data.get(key, default)
    if value is None:
        raise TuneError(f"a tuning spec needs '{key}' (an integer >= {least})")
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise TuneError(f"'{key}' must be an integer >= {least}, got {value!r}")
    return value


def _check_key(key: str, method: str, base: dict[str, Any], what: str) -> None:
    if key == "seed" or key.startswith(PROTOCOL_KEYS[1:]):
        raise TuneError(f"method '{method}': {what} key '{key}' is fixed by the protocol (seed, data.*, eval.*); remove it")
    if key.startswith(("loss.params.", "sampler.params.")):
        return  # checked against the loss's / sampler's own parameters
    if get_dotted(base, key) is None and key.rpartition(".")[2] not in (get_dotted(base, key.rpartition(".")[0]) or {}):
        hint = closest(key, _dotted_keys(base))
        raise TuneError(f"method '{method}': {what} key '{key}' is not a config key{'; did you mean ' + repr(hint) + '?' if hint else ''}")


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        out += _dotted_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def _parse_method(entry: Any, base: dict[str, Any]) -> Method:
    if isinstance(entry, str):
        entry = {"loss": entry}
    if not isinstance(entry, dict) or "loss" not in entry:
        raise TuneError(f"each method needs a 'loss' (e.g. {{loss: bdl}}), got {entry!r}")
    for key in entry:
        if key not in METHOD_KEYS:
            hint = closest(key, METHOD_KEYS)
            raise TuneError(f"unknown method key '{key}'{'; did you mean ' + repr(hint) + '?' if hint else ''} (valid: {', '.join(METHOD_KEYS)})")
    loss, sampler = str(entry["loss"]), entry.get("sampler")
    name = str(entry.get("name") or (f"{loss}+{sampler}" if sampler else loss))
    overrides: dict[str, Any] = {"loss.name": loss, **({"sampler.name": sampler} if sampler else {})}
    fixed = entry.get("set") or {}
    if not isinstance(fixed, dict):
        raise TuneError(f"method '{name}': 'set' must be a mapping of dotted config keys")
    for key in fixed:
        _check_key(str(key), name, base, "set")
    overrides.update({str(k): v for k, v in fixed.items()})
    given = entry.get("space")
    if given is not None and (not isinstance(given, dict) or not given):
        raise TuneError(f"method '{name}': 'space' must be a non-empty mapping (dotted key -> {{low, high}} or {{choices}})")
    both = sorted(set(given or {}) & set(fixed))
    if both:
        raise TuneError(f"method '{name}': {', '.join(both)} both searched ('space') and fixed ('set'); keep one")
    space_raw = copy.deepcopy(default_space(loss, given, fixed))
    space = {}
    for key, value in space_raw.items():
        _check_key(str(key), name, base, "search space")
        try:
            space[str(key)] = parse_distribution(str(key), value)
        except TuneError as err:
            raise TuneError(f"method '{name}': {err}") from None
    return Method(name=name, overrides=overrides, space=space, space_raw=space_raw)


def _probe_values(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """The corners of a space (all lows, all highs): configs that must build and pass the name checks."""
    corners = []
    for end in ("low", "high"):
        corners.append({
            k: (d.choices[0 if end == "low" else -1] if isinstance(d, CategoricalDistribution) else getattr(d, end))
            for k, d in space.items()
        })  # fmt: skip
    return corners


def check_spec(spec: TuneSpec) -> None:
    """Every check that needs the registries or the dataset's annotations (never its images): each
    method's configs build and name real parameters, the fold count fits the training classes."""
    from dmlbench.data.splits import max_folds
    from dmlbench.validation.preflight import check_names, load_index

    for method in spec.methods:
        for probe in _probe_values(method.space):
            try:
                check_names(spec.trial_config(method, probe, 0))
            except (ConfigError, KeyError, ValueError) as err:
                message = str(err).strip('"')
                if isinstance(err, ConfigError) and "has no parameter" in message:
                    message += " (fix the method's search space or its 'set' keys)"
                raise TuneError(f"method '{method.name}': {message}") from None
    try:
        cfg = config_from_dict(spec.base)
    except ConfigError as err:
        raise TuneError(f"base config: {err}") from None
    if cfg.data.val_classes:
        raise TuneError("base config sets data.val_classes: tuning carves its own validation folds; remove it")
    layers = cfg.eval.layers
    if spec.layer not in layers:
        raise TuneError(f"objective layer '{spec.layer}' is not evaluated (eval.layers: {', '.join(layers)})")
    try:
        index = load_index(cfg)  # annotation files only: no image of any split is opened
    except DmlbenchError as err:
        raise TuneError(f"base config's dataset: {err}") from None
    num_classes = len(set(index.labels[index.splits == "train"].tolist()))
    most = max_folds(num_classes)
    if spec.folds > most:
        raise TuneError(
            f"folds: {spec.folds} folds need {2 * spec.folds} training classes ({index.name} under {cfg.data.root} has "
            f"{num_classes}: at most {most} folds, each fold needs 2 classes); lower 'folds'"
        )


def spec_from_dict(data: Any, *, spec_dir: Path | None = None, executor: str | None = None, profile: str | None = None) -> TuneSpec:
    """Parse a spec mapping (structure only; `check_spec` does the checks that read registries and data)."""
    if not isinstance(data, dict):
        raise TuneError(f"a tuning spec must be a mapping, got {data!r}")
    for key in data:
        if key not in TUNE_KEYS:
            hint = closest(key, TUNE_KEYS)
            raise TuneError(f"unknown tuning spec key '{key}'{'; did you mean ' + repr(hint) + '?' if hint else ''} (valid: {', '.join(TUNE_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise TuneError(f"a tuning spec needs a 'name' (a string without '/'), got {name!r}")
    base = data.get("base") or {}
    if isinstance(base, str):
        path = Path(base) if Path(base).is_absolute() or spec_dir is None else spec_dir / base
        base = read_yaml_file(path, TuneError, "base config") or {}
    if not isinstance(base, dict):
        raise TuneError("'base' must be a config mapping or a config YAML path")
    try:
        base = config_to_dict(config_from_dict(base))
    except ConfigError as err:
        raise TuneError(f"base config: {err}") from None
    import_plugins(base.get("plugins") or [])  # a plugin loss's parameters make its default space
    methods_raw = data.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise TuneError("a tuning spec needs 'methods': a non-empty list like [{loss: bdl}, {loss: multi-similarity}]")
    methods = [_parse_method(m, base) for m in methods_raw]
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TuneError(f"method name(s) {', '.join(dupes)} given twice; give each a distinct 'name'")
    objective = data.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"metric", "layer"}:
        raise TuneError(f"'objective' must be a mapping with 'metric' (e.g. map@r) and 'layer' (e.g. emb), got {objective!r}")
    metric = str(objective.get("metric", "map@r"))
    if not METRIC_PATTERN.fullmatch(metric):
        raise TuneError(f"objective metric '{metric}' is not one of map@r, r_precision, recall@K, precision@K")
    job = data.get("job", "trial")
    if job not in JOB_KINDS:
        raise TuneError(f"'job' must be one of {', '.join(JOB_KINDS)}, not {job!r}")
    trials = _int(data, "trials", None, 1)
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TuneError(f"'seed' must be an integer, got {seed!r}")
    try:
        executor_spec = resolve_executor(data.get("executor") or {}, spec_dir, kind=executor, profile=profile)
    except DmlbenchError as err:
        raise TuneError(str(err)) from None
    return TuneSpec(
        name=name,
        output_dir=Path(data.get("output_dir") or Path("tunes") / name),
        base=base,
        methods=methods,
        trials=trials,
        folds=_int(data, "folds", 3, 2),
        metric=metric,
        layer=str(objective.get("layer", "emb")),
        parallel=_int(data, "parallel", 1, 1),
        job=job,
        seeds=_int(data, "seeds", 10, 1),
        seed=seed,
        startup_trials=_int(data, "startup_trials", max(2, trials // 4), 1),
        executor=executor_spec,
    )


def load_spec(
    path: str | Path, *, executor: str | None = None, profile: str | None = None, overrides: dict[str, Any] | None = None
) -> TuneSpec:
    """A spec file, a shipped preset name, or a tune folder (its tune.yaml; the folder's location wins).
    `overrides`: top-level spec keys replaced before parsing (`tune --trials/--folds/--seeds/--out`)."""
    path = Path(path)
    if not path.exists() and (PRESET_DIR / f"{path}.yaml").is_file():  # a shipped preset: `dmlbench tune tune-synthshop`
        path = PRESET_DIR / f"{path}.yaml"
    folder = path if path.is_dir() else None
    if folder is not None:
        path = folder / TUNE_FILE
    data = read_yaml_file(path, TuneError, "tuning spec") or {}
    if overrides:
        if not isinstance(data, dict):
            raise TuneError(f"a tuning spec must be a mapping, got {data!r}")
        data = {**data, **overrides}
    spec = spec_from_dict(data, spec_dir=path.parent, executor=executor, profile=profile)
    if folder is not None and not (overrides or {}).get("output_dir"):
        spec.output_dir = folder
    return spec
