"""Config-time checks that a loss can train with a sampler layout and a dataset (before any work starts).

>>> compatibility_error("bdl", "pairs", 0) is None
True
>>> print(compatibility_error("sbdl", "pairs", 0))
loss 'sbdl' needs attribute labels, but the dataset has none (0 attributes): use a dataset with attributes (e.g. inshop, cub, synthshop) or a loss without them (e.g. bdl)
>>> print(compatibility_error("triplet", "pairs", 0))
loss 'triplet' trains on predefined triplets, but the sampler yields plain batches ("pairs" layout): use an image-wise sampler, or a batch-wise loss such as batch-hard
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dmlbench.losses import LOSSES, build


def compatibility_error(
    loss_name: str,
    sampler_layout: str,
    num_attributes: int,
    params: dict[str, Any] | None = None,
    harness: Mapping[str, Any] | None = None,
) -> str | None:
    """A message saying what to change when the loss cannot train in this setting, else None.

    ``sampler_layout`` is the sampler's ``layout`` ("pairs" or "tuples"); ``num_attributes`` the
    dataset's attribute count (0 when it has none). ``params`` (the loss's config params) matter where a
    capability depends on them, e.g. ``bdl`` with ``lambda_attr > 0`` needs attributes. ``harness``: what
    `losses.build` hands a loss that asks (num_classes, embedding_size, num_attributes).
    """
    try:
        loss = build(loss_name, harness, **(params or {}))
    except (KeyError, ValueError, TypeError) as err:
        return str(err.args[0]) if err.args else str(err)
    if loss.needs_attributes and num_attributes <= 0:
        return (
            f"loss '{loss_name}' needs attribute labels, but the dataset has none (0 attributes): use a dataset "
            "with attributes (e.g. inshop, cub, synthshop) or a loss without them (e.g. bdl)"
        )
    if loss.requires_tuples and sampler_layout != "tuples":
        return (
            f"loss '{loss_name}' trains on predefined triplets, but the sampler yields plain batches "
            f'("{sampler_layout}" layout): use an image-wise sampler, or a batch-wise loss such as batch-hard'
        )
    if sampler_layout == "tuples" and not loss.accepts_tuples:
        tuple_losses = ", ".join(n for n in LOSSES.names() if LOSSES.get(n).accepts_tuples)
        return (
            f"loss '{loss_name}' pairs or mines within the whole batch and cannot use the image-wise sampler's "
            f"predefined triplets: use a batch-wise (P x K) sampler, or one of the losses that accept "
            f"triplets: {tuple_losses}"
        )
    if sampler_layout not in ("pairs", "tuples"):
        return f"unknown sampler layout '{sampler_layout}' (expected 'pairs' or 'tuples')"
    return None
