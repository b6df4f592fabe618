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

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    check_distance_options,
    check_tuples,
    distance_from_cosine,
    gram_input_grad,
    mask_pairs_,
    pair_similarity_sums,
    reduce_losses,
    same_label_pairs,
    stats_from_sums,
    tuple_similarities,
    tuple_sums,
)
from dmlbench.losses.triplet import Distance, Reduction


class DenseMargin(torch.autograd.Function):
    """(similarities of the positive pairs ``rows``/``cols``, sum and count of the non-zero
    ``relu(margin - d)`` over the negative pairs). One GEMM; d^2 = 2 - 2s (euclidean) or d = 1 - s made in
    place; a clamp at the margin zeroes inactive pairs, so the sum is margin B^2 - sum(d) (in float64).
    Backward: one GEMM (symmetric: 2 G @ e), G = 1/d (euclidean; 0 below d = 1e-6, where the distance is
    clamped) or 1 on active pairs, plus the positives' gradient."""

    @staticmethod
    def forward(
        ctx: Any, normed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, margin: float, euclidean: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = normed @ normed.T
        sim_pos = dist[rows, cols]
        dist.mul_(-2.0).add_(2.0) if euclidean else dist.neg_().add_(1.0)
        mask_pairs_(dist, rows, cols, torch.inf)
        if euclidean:
            dist.clamp_(min=0.0).sqrt_()  # cosine >= 1 (duplicates) at distance exactly 0
        dist.clamp_(max=max(margin, 0.0))
        active = dist < margin
        total = (max(margin, 0.0) * dist.numel() - dist.sum(dtype=torch.float64)).to(dist.dtype)
        ctx.dist, ctx.active, ctx.euclidean, ctx.pairs = dist, active, euclidean, (rows, cols)
        ctx.save_for_backward(normed)
        count = active.sum()
        ctx.mark_non_differentiable(count)
        return sim_pos, total, count

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pos: torch.Tensor, grad: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (normed,) = ctx.saved_tensors
        if ctx.euclidean:
            g = ctx.dist.reciprocal().masked_fill_(~ctx.active | (ctx.dist < 1e-6), 0.0).mul_(grad)
        else:
            g = ctx.active.to(normed.dtype).mul_(grad)
        return gram_input_grad(g, normed, ctx.pairs[0], ctx.pairs[1], grad_pos, symmetric=True), None, None, None, None


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
            normed = F.normalize(embeddings, dim=1)
            rows, cols = same_label_pairs(labels)
            sums = pair_similarity_sums(normed, labels)
            sim_pos, total, active_neg = DenseMargin.apply(normed, rows, cols, self.neg_margin, self.distance == "euclidean")
            pos, active_pos = reduce_losses(F.relu(self._distance(sim_pos) - self.pos_margin), self.reduction)
            count = sums[1] if self.reduction == "mean" else active_neg.to(total.dtype)
            neg = total / count.clamp_min(1)
        self.last_stats = stats_from_sums(
            sums, active_pairs=active_pos + active_neg, pos_loss=pos, neg_loss=neg
        )
        return pos + neg

    def _distance(self, sim: torch.Tensor) -> torch.Tensor:
        """Distance from cosine, exactly 0 for duplicates; the clamped branch keeps gradients finite."""
        dist = distance_from_cosine(sim, self.distance)
        return torch.where(sim >= 1.0, torch.zeros_like(dist), dist) if self.distance == "euclidean" else dist
