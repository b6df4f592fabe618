"""Multi-similarity loss with MS mining (Wang et al. 2019), dense on the (B, B) cosine matrix.

Mining (eps = 0.1): for anchor i keep positive j when s_ij - eps < max_{k in N_i} s_ik and negative
j when s_ij + eps > min_{k in P_i} s_ik. Loss per anchor, averaged over all B anchors (anchors with
nothing mined add 0), exactly as pytorch-metric-learning's MultiSimilarityLoss + MultiSimilarityMiner
(registered as ``multi-similarity-pml``; tests check they agree):

    1/alpha log(1 + sum_{P_i} exp(-alpha (s - lam))) + 1/beta log(1 + sum_{N_i} exp(beta (s - lam)))

Defaults alpha=2, beta=50, lam (``base``) = 0.5: the paper's and PML's values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    gram_input_grad,
    mask_pairs_,
    pair_similarity_sums,
    same_label_pairs,
    stats_from_sums,
)


class DenseNegatives(torch.autograd.Function):
    """(similarities of the positive pairs ``rows``/``cols``, per anchor ``1/beta log(1 + sum over its mined
    negatives of exp(beta (s - base)))``, each anchor's highest negative similarity, the number of mined
    negatives). Mined: s + eps > the anchor's lowest positive similarity ``lowest_pos``; the row max, which
    the mining needs anyway, is the log-sum-exp shift. One GEMM and in-place passes over it; backward
    dL/ds = w_i exp(z_ij - shift_i), symmetrised, one GEMM."""

    @staticmethod
    def forward(
        ctx: Any, normed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, beta: float, base: float, epsilon: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sim = normed @ normed.T
        sim_pos = sim[rows, cols]
        lowest_pos = torch.full_like(sim[0], torch.inf).scatter_reduce_(0, rows, sim_pos, "amin")
        highest_neg = mask_pairs_(sim, rows, cols, -torch.inf).amax(dim=1)
        any_neg = highest_neg + epsilon > lowest_pos  # the hardest negative is mined iff any is
        shift = torch.where(any_neg, beta * (highest_neg - base), 0.0).clamp_min(0)
        dropped = sim.add_(epsilon) <= lowest_pos[:, None]
        exp_terms = sim.sub_(epsilon + base).mul_(beta).sub_(shift[:, None]).masked_fill_(dropped, -torch.inf).exp_()
        denominator = torch.exp(-shift) + exp_terms.sum(dim=1)
        ctx.exp_terms, ctx.weight, ctx.pairs = exp_terms, denominator.reciprocal(), (rows, cols)
        ctx.save_for_backward(normed)
        mined = dropped.numel() - dropped.sum()
        ctx.mark_non_differentiable(highest_neg, mined)
        return sim_pos, (shift + torch.log(denominator)) / beta, highest_neg, mined

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pos: torch.Tensor, grad: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (normed,) = ctx.saved_tensors
        grad_sim = ctx.exp_terms * (grad * ctx.weight)[:, None]
        return gram_input_grad(grad_sim, normed, ctx.pairs[0], ctx.pairs[1], grad_pos, symmetric=False), None, None, None, None, None


@register("multi-similarity")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss with MS mining (alpha=2, beta=50, base=0.5, epsilon=0.1), dense."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float = 0.1
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = (
            float(alpha),
            float(beta),
            float(base),
            float(epsilon),
        )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        normed = torch.nn.functional.normalize(embeddings, dim=1)
        rows, cols = same_label_pairs(labels)
        sim_pos, neg_loss, highest_neg, mined_neg = DenseNegatives.apply(
            normed, rows, cols, self.beta, self.base, self.epsilon
        )
        with torch.no_grad():  # positives are few: their term is computed pair by pair
            lowest_pos = torch.full_like(highest_neg, torch.inf).scatter_reduce_(0, rows, sim_pos, "amin")
        hard_pos = sim_pos - self.epsilon < highest_neg[rows]
        # A row mines a positive iff its hardest one is mined: that one's term is the exact row max.
        any_pos = lowest_pos - self.epsilon < highest_neg
        shift = torch.where(any_pos, -self.alpha * (lowest_pos - self.base), 0.0).clamp_min(0)
        terms = torch.where(hard_pos, torch.exp(-self.alpha * (sim_pos - self.base) - shift[rows]), 0.0)
        sums = torch.zeros_like(shift).index_add(0, rows, terms)
        pos_loss = (shift + torch.log(torch.exp(-shift) + sums)) / self.alpha
        loss = (pos_loss + neg_loss).mean() if len(labels) else normed.sum() * 0.0
        with torch.no_grad():
            mined = torch.stack([hard_pos.sum(), mined_neg]).to(normed.dtype)
        self.last_stats = stats_from_sums(
            pair_similarity_sums(normed, labels),
            active_pairs=mined.sum(),
            mined_pos_pairs=mined[0],
            mined_neg_pairs=mined[1],
        )
        return loss
