"""Contrastive loss (Hadsell et al. 2006) on L2-normalised embeddings, dense over the batch.

``relu(d - pos_margin)`` on positive pairs plus ``relu(neg_margin - d)`` on negative pairs, each
reduced separately (``nonzero``: over pairs with a positive loss, as pytorch-metric-learning's
ContrastiveLoss; ``mean``: over all pairs of that kind) and summed. Defaults are PML's
(euclidean distance, pos_margin=0, neg_margin=1). With predefined triplets only their 2T pairs count.

Exact duplicates (cosine >= 1) are at distance exactly 0, not at the 1e-6 where the euclidean
distance is clamped for a finite gradient: a duplicate positive pair then has zero loss and does not
count as active in the ``nonzero`` mean (as in PML).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    check_distance_options,
    check_tuples,
    cosine_matrix,
    distance_from_cosine,
    label_masks,
    pair_similarity_sums,
    reduce_losses,
    stats_from_sums,
    tuple_similarities,
    tuple_sums,
)
from dmlbench.losses.triplet import Distance, Reduction


@register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss with margins on the distance between normalised embeddings."""

    accepts_tuples = True

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: Distance = "euclidean",
        reduction: Reduction = "nonzero",
    ) -> None:
        super().__init__()
        check_distance_options(distance, reduction)
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)
        self.distance, self.reduction = distance, reduction

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if tuples is not None:
            tuples = check_tuples(tuples, len(embeddings))
            sim_ap, sim_an = tuple_similarities(F.normalize(embeddings, dim=1), tuples)
            sums = tuple_sums(sim_ap, sim_an)
            pos, active_pos = reduce_losses(F.relu(self._distance(sim_ap) - self.pos_margin), self.reduction)
            neg, active_neg = reduce_losses(F.relu(self.neg_margin - self._distance(sim_an)), self.reduction)
        else:
            normed, sim = cosine_matrix(embeddings)
            pos_mask, neg_mask = label_masks(labels)
            sums = pair_similarity_sums(normed, labels)
            dist = self._distance(sim)
            pos, active_pos = reduce_losses(F.relu(dist - self.pos_margin), self.reduction, pos_mask)
            neg, active_neg = reduce_losses(F.relu(self.neg_margin - dist), self.reduction, neg_mask)
        self.last_stats = stats_from_sums(
            sums, active_pairs=active_pos + active_neg, pos_loss=pos, neg_loss=neg
        )
        return pos + neg

    def _distance(self, sim: torch.Tensor) -> torch.Tensor:
        """Distance from cosine, exactly 0 for duplicates; the clamped branch keeps gradients finite."""
        dist = distance_from_cosine(sim, self.distance)
        return torch.where(sim >= 1.0, torch.zeros_like(dist), dist) if self.distance == "euclidean" else dist
