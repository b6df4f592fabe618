"""Which losses can read which batches: checked when a config is built, before any training.

A sampler's ``layout`` says how its batches must be read: ``"tuples"`` (image-wise: use exactly the
predefined (anchor, positive, negative) triplets) or ``"pairs"`` (pair everything within the batch).
A loss says what it can read with its ``accepts_tuples`` / ``requires_tuples`` flags.
"""

from __future__ import annotations

from typing import Any

from bench.config import ConfigError
from samplers import SAMPLERS
from samplers.base import BatchSampler


def check_compatible(
    loss: Any, sampler: str | type[BatchSampler] | BatchSampler, *, loss_name: str | None = None
) -> None:
    """Raise ConfigError when `loss` (class or instance) cannot train on `sampler`'s batches.

    `loss_name` (e.g. the registry name from the config) is used in the message; default: the class name.

    >>> class PairOnly:
    ...     accepts_tuples = False
    ...     requires_tuples = False
    >>> check_compatible(PairOnly, "batch-wise")
    >>> check_compatible(PairOnly, "image-wise")
    Traceback (most recent call last):
    ...
    bench.config.ConfigError: loss 'PairOnly' pairs every image of a batch, but sampler 'image-wise' ...
    """
    if isinstance(sampler, str):
        sampler_name, layout = sampler, SAMPLERS.get(sampler).layout
    else:
        sampler_name, layout = getattr(sampler, "name", "") or type(sampler).__name__, sampler.layout
    loss_cls = loss if isinstance(loss, type) else type(loss)
    loss_name = loss_name or loss_cls.__name__
    if layout == "tuples" and not getattr(loss_cls, "accepts_tuples", False):
        raise ConfigError(
            f"loss '{loss_name}' pairs every image of a batch, but sampler '{sampler_name}' yields predefined "
            "(anchor, positive, negative) triplets that the loss must use as given. Use a pair-wise sampler "
            "(batch-wise, category-balanced) or a loss that accepts tuples (accepts_tuples = True)."
        )
    if layout == "pairs" and getattr(loss_cls, "requires_tuples", False):
        raise ConfigError(
            f"loss '{loss_name}' needs predefined triplets (requires_tuples = True), but sampler "
            f"'{sampler_name}' yields batches without them. Use sampler 'image-wise' with this loss."
        )
