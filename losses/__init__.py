"""The loss registry: one module per loss family, all called the same way (see `dmlbench.losses.base`).

>>> loss = build("bdl")
>>> isinstance(loss, MetricLoss)
True
"""

from __future__ import annotations

from typing import Any

from dmlbench.losses.base import MetricLoss
from dmlbench.registry import Registry

LOSSES: Registry[type[MetricLoss]] = Registry("loss")
register = LOSSES.register


def build(name: str, **params: Any) -> MetricLoss:
    """Instantiate a registered loss by name, checking its parameters first."""
    LOSSES.check_params(name, params)
    return LOSSES.get(name)(**params)


# Importing the modules registers their losses.
# (the loss modules are imported here; see the end of this file)

__all__ = ["LOSSES", "MetricLoss", "build", "register"]

# Loss families (each module registers its losses on import). Kept last: they import `register` above.
from dmlbench.losses import attribute, binomial, contrastive, multi_similarity, pml, triplet  # noqa: E402, F401
