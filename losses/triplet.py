"""Triplet losses: on predefined triplets (image-wise sampling) and batch-hard (Hermans et al. 2017).

Distances are on L2-normalised embeddings: ``euclidean`` = ||a - b|| = sqrt(2 - 2 cos), as
pytorch-metric-learning's default LpDistance, or ``cosine`` = 1 - cos. Per triplet
``relu(d(a, p) - d(a, n) + margin)``, reduced by ``mean`` (over all triplets) or ``nonzero`` (over
triplets with a positive loss, PML's AvgNonZeroReducer).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    check_distance_options,
    check_tuples,
    distance_from_cosine,
    mask_pairs_,
    pair_similarity_sums,
    reduce_losses,
    same_label_pairs,
    stats_from_sums,
    tuple_similarities,
    tuple_sums,
)

Distance = Literal["euclidean", "cosine"]
Reduction = Literal["mean", "nonzero"]


@register("triplet")
class TripletLoss(MetricLoss):
    """Triplet margin loss on the sampler's predefined (anchor, positive, negative) triplets."""

    accepts_tuples = True
    requires_tuples = True

    def __init__(
        self, margin: float = 0.2, distance: Distance = "euclidean", reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_distance_options(distance, reduction)
        self.margin, self.distance, self.reduction = float(margin), distance, reduction

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if tuples is None:
            raise ValueError(
                "loss 'triplet' trains on predefined triplets: use an image-wise sampler, "
                "or 'batch-hard' to mine triplets from a batch-wise (P x K) batch"
            )
        tuples = check_tuples(tuples, len(embeddings))
        sim_ap, sim_an = tuple_similarities(F.normalize(embeddings, dim=1), tuples)
        losses = F.relu(
            distance_from_cosine(sim_ap, self.distance)
            - distance_from_cosine(sim_an, self.distance)
            + self.margin
        )
        loss, active = reduce_losses(losses, self.reduction)
        self.last_stats = stats_from_sums(
            tuple_sums(sim_ap, sim_an), triplets=float(len(tuples)), active_triplets=active
        )
        return loss


@register("batch-hard")
class BatchHardTripletLoss(MetricLoss):
    """Batch-hard triplet loss: per anchor its farthest positive and closest negative in the batch.

    Anchors without a positive or a negative are skipped (``triplets`` counts the others). The hardest
    pairs are picked without gradient on the cosine matrix (distance is monotone in it); only the 2B
    mined pairs are recomputed with gradient, so the backward pass costs O(B D) instead of a GEMM.
    """

    def __init__(
        self, margin: float = 0.2, distance: Distance = "euclidean", reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_distance_options(distance, reduction)
        self.margin, self.distance, self.reduction = float(margin), distance, reduction

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        normed = F.normalize(embeddings, dim=1)
        with torch.no_grad():  # mining: pick the pairs on the cosine matrix, which needs no gradient
            rows, cols = same_label_pairs(labels)
            sim = normed @ normed.T
            sim_pos = sim[rows, cols]  # positives are few: taken pair by pair, lowest index on ties
            hardest_neg = mask_pairs_(sim, rows, cols, -torch.inf).max(dim=1)  # negatives: one pass
            lowest = normed.new_full((len(labels),), torch.inf).scatter_reduce_(0, rows, sim_pos, "amin")
            first = torch.where(sim_pos == lowest[rows], cols, len(labels))
            hardest_pos_index = torch.full((len(labels),), len(labels), device=labels.device).scatter_reduce_(0, rows, first, "amin")
            valid = torch.isfinite(lowest) & torch.isfinite(hardest_neg.values)
            hardest_pos_index = torch.where(valid, hardest_pos_index, 0)
        # Gradient flows only through the 2B mined pairs: recompute just those (O(B D), not O(B^2)).
        sim_ap = (normed * normed[hardest_pos_index]).sum(1)
        sim_an = (normed * normed[hardest_neg.indices]).sum(1)
        d_ap = distance_from_cosine(sim_ap, self.distance)
        d_an = distance_from_cosine(sim_an, self.distance)
        loss, active = reduce_losses(F.relu(d_ap - d_an + self.margin), self.reduction, valid)
        self.last_stats = stats_from_sums(
            pair_similarity_sums(normed, labels), triplets=valid.sum(), active_triplets=active
        )
        return loss
