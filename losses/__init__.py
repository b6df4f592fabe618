"""The loss registry: one module per loss family, all called the same way (see `dmlbench.losses.base`).

>>> loss = build("bdl")
>>> isinstance(loss, MetricLoss)
True
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dmlbench.losses.base import MetricLoss
from dmlbench.registry import LOSS_HARNESS_ARGS, PLUGIN_HINT, Registry, init_parameter_names

LOSSES: Registry[type[MetricLoss]] = Registry("loss", unknown_hint=PLUGIN_HINT)
register = LOSSES.register



def build(name: str, harness: Mapping[str, Any] | None = None, **params: Any) -> MetricLoss:
    """Instantiate a registered loss by name, checking its parameters first. `harness` holds the
    LOSS_HARNESS_ARGS values of this run; each is passed only when the loss's __init__ asks for it."""
    LOSSES.check_params(name, params)
    cls = LOSSES.get(name)
    wanted = init_parameter_names(cls)
    given = {k: v for k, v in (harness or {}).items() if k in LOSS_HARNESS_ARGS and k in wanted}
    missing = [k for k in LOSS_HARNESS_ARGS if k in wanted and k not in given and _required(cls, k)]
    if missing:
        raise TypeError(f"loss '{name}' needs {', '.join(missing)} from the harness; pass harness={{...}} to build()")
    return cls(**given, **params)


def _required(cls: type, key: str) -> bool:
    param = inspect.signature(cls).parameters[key]  # the constructor's signature, without self
    return param.default is inspect.Parameter.empty


__all__ = ["LOSSES", "LOSS_HARNESS_ARGS", "MetricLoss", "build", "register"]

# Loss families (each module registers its losses on import). Kept last: they import `register` above.
from dmlbench.losses import attribute, binomial, contrastive, multi_similarity, pml, triplet  # noqa: E402, F401
