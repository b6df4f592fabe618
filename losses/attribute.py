"""Attribute-only learning: SGML's "attribute learning network" ablation (Table IV/VIII, variant ii).

The embedding branch gets no gradient from this loss; evaluate the FC feature, as the paper does.
"""

from __future__ import annotations

import torch

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import attribute_bce, require_attributes


@register("bce-attr")
class AttributeBCELoss(MetricLoss):
    """``weight * BCEWithLogits(attr_logits, attr_targets)``, mean over images and attributes."""

    needs_attributes = True
    accepts_tuples = True  # ignores pairs entirely, so any batch layout works

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        require_attributes("bce-attr", attr_logits, attr_targets)
        assert attr_logits is not None and attr_targets is not None
        attr = attribute_bce(attr_logits, attr_targets)
        with torch.no_grad():
            accuracy = ((attr_logits > 0) == (attr_targets > 0.5)).float().mean()
        self.last_stats = {
            "attr_loss": float(attr.detach()),
            "attr_accuracy": float(accuracy),
            "active_pairs": 0.0,
            "pos_sim": 0.0,
            "neg_sim": 0.0,
            "degenerate": 0.0,
        }
        return self.weight * attr
