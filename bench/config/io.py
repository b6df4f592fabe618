"""Reading and writing configs: YAML -> typed `Config` (every key and enumerated value checked),
`key=value` overrides, and the stable `run_id`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from dmlbench.config.keys import get_dotted, normalise_key, pop_dotted, set_dotted
from dmlbench.config.schema import HASHED_WHEN_NOT_DEFAULT, RUNTIME_KEYS, Bounds, Choices, Config
from dmlbench.errors import (
    ConfigError,
    DmlbenchError,
    FileFormatError,
    did_you_mean,
    unknown_value,
    yaml_problem,
)
from dmlbench.files import read_utf8


@functools.cache  # get_type_hints re-evaluates string annotations: slow for 1,000-cell sweeps
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce, e.g. int -> float) a YAML value against a field's type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"bad value for '{key}': {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(unknown_value(key, value, typing.get_args(tp)))
    if origin is Annotated:
        base, *metadata = typing.get_args(tp)
        value = _coerce(value, base, key)
        for meta in metadata:
            if isinstance(meta, Choices) and not meta.allows(value):
                raise ConfigError(unknown_value(key, value, meta.known()))
            problem = meta.problem(value) if isinstance(meta, Bounds) else None
            if problem:
                raise ConfigError(f"'{key}' {problem}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)  # `1e-4`: a number in YAML 1.2, a string to YAML 1.1 readers
        raise ConfigError(f"'{key}' must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"'{key}' must be a string, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_:
            hint = did_you_mean(key, types_, prefix) or f"; valid keys: {', '.join(types_)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        tp = types_[key]
        if _is_dataclass_type(tp):
            kwargs[key] = _build(tp, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any] | None) -> Config:
    return _build(Config, copy.deepcopy(data or {}), "")


# Based on yaml's C loader where present: ~10x faster, which decides whether collecting 1,000 run configs
# takes 0.5 s or 5 s.
class ConfigYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML with YAML 1.2 booleans: only true/false are booleans, so `amp: off` or `compile=off` stay strings
    (YAML 1.1 would read off/on/yes/no as booleans)."""


ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.2 floats such as `1e-4` or `1.5e3`: YAML 1.1 (PyYAML's resolver) reads them as strings.
EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
ConfigYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(f"^{EXPONENT_FLOAT.pattern}$"), list("-+.0123456789"))


# What a config, sweep or table file may expand to (mappings, lists and scalars counted with every alias
# expanded): a real one holds hundreds; YAML aliases nested 9 deep of 9 each expand to 387 million.
MAX_YAML_VALUES = 1_000_000


class YamlTooLarge(yaml.YAMLError):
    """YAML whose aliases expand beyond MAX_YAML_VALUES values, or refer to themselves."""


def check_expansion(root: Any) -> int:
    """How many values `root` holds with shared (aliased) parts counted at each use; YamlTooLarge
    beyond MAX_YAML_VALUES or for a structure that contains itself. Linear in the distinct values."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise YamlTooLarge("an alias refers to the mapping or list that contains it (a recursive structure)")
        on_path.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_VALUES:
                raise YamlTooLarge(f"its aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)")
        on_path.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load_yaml(text: str) -> Any:
    """Parse config, sweep and preset YAML; YamlTooLarge when aliases expand beyond MAX_YAML_VALUES values.

    >>> load_yaml("{amp: off, pretrained: true, lr: 1e-4}")
    {'amp': 'off', 'pretrained': True, 'lr': 0.0001}
    >>> load_yaml("a: &a [1, 2]\\nb: *a")
    {'a': [1, 2], 'b': [1, 2]}
    >>> bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\\n" + "".join(
    ...     f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\\n" for i in range(1, 10))
    >>> load_yaml(bomb)
    Traceback (most recent call last):
    ...
    dmlbench.config.io.YamlTooLarge: its aliases expand to more than 1,000,000 values (an alias bomb?)
    """
    data = yaml.load(text, Loader=ConfigYamlLoader)
    check_expansion(data)
    return data


def read_yaml_file(path: Path, error: type[DmlbenchError] = ConfigError, what: str = "YAML file") -> Any:
    """The YAML file at `path` parsed with `load_yaml` (None when empty); `error` with one line naming
    `what` the file is (config file, sweep file, tuning spec) when it is missing, too large, not UTF-8 or
    not YAML."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        text = read_utf8(path)
    except FileFormatError as err:
        raise error(str(err)) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        raise error(f"{path} is not valid YAML: {yaml_problem(err)}") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    data = read_yaml_file(Path(path), ConfigError, "config file") or {}
    return apply_overrides(config_from_dict(data), overrides)


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", parsed YAML value); `loss=sbdl` is shorthand for `loss.name=sbdl`
    (`dmlbench.config.keys.KEY_ALIASES`)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. train.epochs=3)")
    key, raw = text.split("=", 1)
    key = normalise_key(key.strip())
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...] | dict[str, Any]) -> Config:
    data = config_to_dict(cfg)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        if key.endswith(".name") and key.split(".")[0] in ("loss", "sampler"):
            section = data[key.split(".")[0]]
            if section.get("name") != value:
                section["params"] = {}  # another loss/sampler: the old one's params do not apply
        set_dotted(data, key, value)
    return config_from_dict(data)


def canonical(cfg: Config) -> dict[str, Any]:
    """The config minus runtime-only keys, as hashed into the run_id."""
    data = config_to_dict(cfg)
    for key in RUNTIME_KEYS:
        pop_dotted(data, key)
    # Which modules are imported does not change a run: the code of the loss/sampler/... it uses does,
    # and that is recorded and checked per run folder (dmlbench.plugins). Hashed as the empty list, so
    # ids of runs from before this rule stay the same and `--plugin` and `plugins:` give equal ids.
    data["plugins"] = []
    for key, default in HASHED_WHEN_NOT_DEFAULT.items():
        if get_dotted(data, key) == default:
            pop_dotted(data, key)
    return data


def run_id(cfg: Config) -> str:
    """Stable 12-hex-digit id of everything that can change a run's result."""
    blob = json.dumps(canonical(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
