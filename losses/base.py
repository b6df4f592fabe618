"""The one calling convention every loss follows, and its capability flags."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class MetricLoss(nn.Module):
    """Base class of every registered loss.

    Called as ``loss(embeddings, labels, *, tuples=None, attr_logits=None, attr_targets=None)``:

    - ``embeddings``: (B, D) raw (not normalised) features; cosine losses normalise themselves.
    - ``labels``: (B,) int64 class ids.
    - ``tuples``: (T, 3) int64 positions into the batch (anchor, positive, negative) when the
      sampler predefines triplets (image-wise sampling), else None.
    - ``attr_logits`` / ``attr_targets``: (B, K) attribute logits and {0, 1} targets.

    Returns a scalar tensor. ``self.last_stats`` holds plain floats about the last call, at least
    ``active_pairs`` (or ``active_triplets``), ``pos_sim`` and ``neg_sim`` (mean cosine), and
    ``degenerate`` (1.0 when the batch had no usable positive or negative, else 0.0).
    """

    needs_attributes: ClassVar[bool] = False  # needs attr_logits/attr_targets (dataset with attributes)
    accepts_tuples: ClassVar[bool] = False  # can train on image-wise predefined triplets
    requires_tuples: ClassVar[bool] = False  # only meaningful with predefined triplets (image-wise)
    has_parameters: ClassVar[bool] = False  # owns trainable parameters (gets its own optimizer group)
    # The loss parameters' learning rate is train.lr x lr_multiplier (e.g. 100 for Proxy-Anchor's
    # proxies). A class attribute, or set `self.lr_multiplier` in __init__ to make it a config param.
    lr_multiplier: float = 1.0
    # cannot train data-parallel (train.distributed), e.g. it keeps per-process state that the gathered
    # global batch does not reproduce; such a loss is refused before training on several processes
    single_device_only: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.last_stats: dict[str, float] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {
            "needs_attributes": cls.needs_attributes,
            "accepts_tuples": cls.accepts_tuples,
            "requires_tuples": cls.requires_tuples,
            "has_parameters": cls.has_parameters,
            "single_device_only": cls.single_device_only,
        }
