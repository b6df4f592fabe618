"""Dotted config keys: the shorthand aliases and get/set on nested dicts (one place for all readers).

>>> normalise_key("loss"), normalise_key("dataset"), normalise_key("loss.params.alpha")
('loss.name', 'data.dataset', 'loss.params.alpha')
>>> get_dotted({"loss": {"params": {"alpha": 2}}}, "loss.params.alpha"), get_dotted({}, "x.y")
(2, None)
>>> data = {}; set_dotted(data, "train.epochs", 3); data
{'train': {'epochs': 3}}
"""

from __future__ import annotations

from typing import Any

from dmlbench.errors import ConfigError

# Shorthands accepted wherever a dotted key is (overrides, sweep grids and rules, collect's grid columns).
KEY_ALIASES: dict[str, str] = {"loss": "loss.name", "sampler": "sampler.name", "dataset": "data.dataset"}

# The keys `check_names` reads (registry names and their parameters, checked after plugins are
# imported): a sweep validates each distinct combination of these once.
NAME_CHECKED_KEYS: tuple[str, ...] = (
    "plugins",
    "loss.name",
    "loss.params",
    "sampler.name",
    "sampler.params",
    "data.dataset",
    "data.options",
    "model.backbone",
)


def normalise_key(key: str) -> str:
    """A dotted config key with the shorthand aliases resolved."""
    return KEY_ALIASES.get(key, key)


def short_key(key: str) -> str:
    """Column header of a config key: `loss.name` -> loss, `loss.params.alpha` -> alpha.

    >>> short_key("sampler.name"), short_key("loss.params.beta"), short_key("layer")
    ('sampler', 'beta', 'layer')
    """
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


MISSING: Any = object()  # `get_dotted(..., default=MISSING)` tells a missing key from a None value


def get_dotted(data: dict[str, Any], key: str, default: Any = None) -> Any:
    """The value at dotted `key` in nested dicts; `default` when any part is missing."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` in nested dicts, creating missing levels."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is not a mapping")
        node = nxt
    node[parts[-1]] = value


def pop_dotted(data: dict[str, Any], key: str) -> None:
    """Remove dotted `key` from nested dicts (missing: nothing happens)."""
    parent = get_dotted(data, key.rpartition(".")[0]) if "." in key else data
    if isinstance(parent, dict):
        parent.pop(key.rpartition(".")[2], None)
