"""Search spaces: one dotted config key -> an Optuna distribution, the shipped defaults per loss, and the
checks that make a bad space fail before anything is submitted.

A space entry in a tuning spec is one of::

    loss.params.alpha: {low: 0.5, high: 8, log: true}     # float (log: sampled on a log scale)
    sampler.params.images_per_class: {low: 2, high: 8, int: true}
    train.optimizer: {choices: [adam, adamw]}

>>> parse_distribution("train.lr", {"low": 1e-4, "high": 1e-2, "log": True})
FloatDistribution(high=0.01, log=True, low=0.0001, step=None)
>>> parse_distribution("loss.params.alpha", {"low": 2, "high": 1})
Traceback (most recent call last):
...
dmlbench.errors.TuneError: search space 'loss.params.alpha': empty range (low 2 >= high 1); make low smaller than high
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from dmlbench.errors import TuneError

# Every method also tunes its learning rate (the Reality Check tunes it per loss).
LR_SPACE: dict[str, Any] = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
# Shipped defaults per loss: ranges around each paper's recommended values, wide enough to matter.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "bdl": {"loss.params.alpha": {"low": 0.5, "high": 8.0, "log": True}, "loss.params.beta": {"low": 0.1, "high": 1.0}},
    "sbdl": {
        "loss.params.alpha": {"low": 0.5, "high": 8.0, "log": True},
        "loss.params.beta": {"low": 0.1, "high": 1.0},
        "loss.params.lambda_attr": {"low": 0.1, "high": 10.0, "log": True},
    },
    "multi-similarity": {
        "loss.params.alpha": {"low": 0.5, "high": 10.0, "log": True},
        "loss.params.beta": {"low": 10.0, "high": 100.0, "log": True},
        "loss.params.base": {"low": 0.1, "high": 0.9},
    },
    "batch-hard": {"loss.params.margin": {"low": 0.01, "high": 1.0, "log": True}},
    "triplet": {"loss.params.margin": {"low": 0.01, "high": 1.0, "log": True}},
    "contrastive": {"loss.params.pos_margin": {"low": 0.0, "high": 0.5}, "loss.params.neg_margin": {"low": 0.3, "high": 1.5}},
    "bce-attr": {"loss.params.weight": {"low": 0.1, "high": 10.0, "log": True}},
}
for _name in ("multi-similarity", "batch-hard", "triplet", "contrastive"):
    DEFAULT_SPACES[f"{_name}-pml"] = DEFAULT_SPACES[_name]  # the PML references take the same parameters
ENTRY_KEYS = ("low", "high", "log", "int", "step", "choices")


def loss_space(loss: str) -> dict[str, Any]:
    """The searched parameters of `loss`: the shipped ranges of a built-in (DEFAULT_SPACES); else the ranges
    the loss class declares (`search_space = {"m": {"low": 0.1, "high": 0.5}}`); else one range per float
    parameter of its `__init__` with a positive default d: [d/4, 4d] on a log scale. An unknown name: {}
    (the spec's checks name it).

    >>> sorted(loss_space("multi-similarity"))
    ['loss.params.alpha', 'loss.params.base', 'loss.params.beta']
    """
    if loss in DEFAULT_SPACES:
        return DEFAULT_SPACES[loss]
    from dmlbench.errors import UnknownNameError
    from dmlbench.losses import LOSSES

    try:
        cls = LOSSES.get(loss)
    except UnknownNameError:
        return {}
    declared = getattr(cls, "search_space", None)
    if isinstance(declared, dict) and declared:
        return {f"loss.params.{k}": dict(v) for k, v in declared.items()}
    out: dict[str, Any] = {}
    for name, default in LOSSES.params(loss).items():
        if isinstance(default, float) and default > 0:
            out[f"loss.params.{name}"] = {"low": default / 4, "high": default * 4, "log": True}
    return out


def default_space(loss: str, given: dict[str, Any] | None = None, fixed: Any = ()) -> dict[str, Any]:
    """A method's space by one rule for every method: the shared `train.lr` plus the loss's parameters
    (`loss_space`), with the spec's own `space` entries merged over them (a given entry replaces that key's
    range, never the others) and the keys the method fixes with `set` left out."""
    merged = {**loss_space(loss), **LR_SPACE}  # this order: the order TPE draws in (a preset's results)
    merged = {k: v for k, v in merged.items() if k not in set(fixed)}
    return {**merged, **(given or {})}


def parse_distribution(key: str, entry: Any) -> BaseDistribution:
    """One space entry -> its Optuna distribution; a message saying what to fix otherwise."""
    where = f"search space '{key}'"
    if not isinstance(entry, dict):
        raise TuneError(f"{where} must be a mapping like {{low: 0.1, high: 1.0}} or {{choices: [a, b]}}, got {entry!r}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise TuneError(f"{where}: unknown field(s) {', '.join(unknown)}; use {', '.join(ENTRY_KEYS)}")
    if "choices" in entry:
        choices = entry["choices"]
        if not isinstance(choices, list) or not choices:
            raise TuneError(f"{where}: choices must be a non-empty list")
        return CategoricalDistribution(choices)
    if "low" not in entry or "high" not in entry:
        raise TuneError(f"{where} needs both low and high (or choices)")
    low, high = entry["low"], entry["high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise TuneError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if low >= high:
        raise TuneError(f"{where}: empty range (low {low} >= high {high}); make low smaller than high")
    log = bool(entry.get("log", False))
    if log and low <= 0:
        raise TuneError(f"{where}: a log-scale range needs low > 0, got {low}")
    if entry.get("int"):
        return IntDistribution(int(low), int(high), log=log, step=int(entry.get("step", 1)))
    return FloatDistribution(float(low), float(high), log=log, step=entry.get("step"))


def describe_space(space: dict[str, BaseDistribution]) -> str:
    """One line per method for tables: `alpha [0.5, 8] log, lr [1e-4, 1e-2] log`."""
    parts = []
    for key, dist in space.items():
        short = key.rsplit(".", 1)[-1]
        if isinstance(dist, CategoricalDistribution):
            parts.append(f"{short} {{{', '.join(map(str, dist.choices))}}}")
        elif isinstance(dist, FloatDistribution | IntDistribution):
            parts.append(f"{short} [{dist.low:g}, {dist.high:g}]{' log' if dist.log else ''}")
    return ", ".join(parts)
