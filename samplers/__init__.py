"""The sampler registry: how training batches are drawn (see `dmlbench.samplers.base`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmlbench.registry import PLUGIN_HINT, Registry
from dmlbench.samplers.base import Batch, BatchSampler

SAMPLERS: Registry[type[BatchSampler]] = Registry("sampler", unknown_hint=PLUGIN_HINT)
register = SAMPLERS.register


def build(
    name: str,
    labels: np.ndarray,
    *,
    seed: int,
    groups: np.ndarray | None = None,
    batches_per_epoch: int | None = None,
    **params: Any,
) -> BatchSampler:
    SAMPLERS.check_params(name, params)
    return SAMPLERS.get(name)(labels, seed=seed, groups=groups, batches_per_epoch=batches_per_epoch, **params)


__all__ = ["SAMPLERS", "Batch", "BatchSampler", "build", "register"]

# Importing the modules registers their samplers (after SAMPLERS exists: they import it from here).
from dmlbench.samplers import batch_wise, category_balanced, image_wise  # noqa: E402, F401
