"""Multi-similarity loss with MS mining (Wang et al. 2019), dense on the (B, B) cosine matrix.

Mining (eps = 0.1): for anchor i keep positive j when s_ij - eps < max_{k in N_i} s_ik and negative
j when s_ij + eps > min_{k in P_i} s_ik. Loss per anchor, averaged over all B anchors (anchors with
nothing mined add 0), exactly as pytorch-metric-learning's MultiSimilarityLoss + MultiSimilarityMiner
(registered as ``multi-similarity-pml``; tests check they agree):

    1/alpha log(1 + sum_{P_i} exp(-alpha (s - lam))) + 1/beta log(1 + sum_{N_i} exp(beta (s - lam)))

Defaults alpha=2, beta=50, lam (``base``) = 0.5: the paper's and PML's values.
"""

from __future__ import annotations

import torch

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import cosine_matrix, label_masks, pair_similarity_sums, stats_from_sums


def log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log(1 + sum_{mask} exp(x))``: 0 for empty rows, no overflow, finite gradients.

    ``row_max`` (B,) must bound the masked x of each row from above (the mining already knows it),
    so the usual logsumexp shift needs no extra pass over the matrix.

    >>> x = torch.tensor([[0.0, 100.0], [1.0, 2.0]])
    >>> mask = torch.tensor([[True, True], [False, False]])
    >>> [round(v, 4) for v in log1p_sum_exp(x, mask, torch.tensor([100.0, 2.0])).tolist()]
    [100.0, 0.0]
    """
    shift = row_max.clamp_min(0).detach()  # log(1 + sum e^x) = m + log(e^-m + sum e^(x - m))
    terms = torch.where(mask, torch.exp(x - shift[:, None]), 0.0)
    return shift + torch.log(torch.exp(-shift) + terms.sum(dim=1))


def ms_mine(
    sim: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MS mining on a similarity matrix: kept (hard) positive and negative masks, plus each row's
    lowest positive and highest negative similarity (+inf / -inf when the row has none).

    >>> sim = torch.tensor([[1.0, 0.3, 0.35, 0.0], [0.3, 1.0, 0.0, 0.0], [0.35, 0.0, 1.0, 0.5], [0.0, 0.0, 0.5, 1.0]])
    >>> pos, neg, lowest_pos, highest_neg = ms_mine(sim, *label_masks(torch.tensor([0, 0, 1, 1])), 0.1)
    >>> pos.int().tolist()[0], neg.int().tolist()[0], round(lowest_pos[0].item(), 4), round(highest_neg[0].item(), 4)
    ([0, 1, 0, 0], [0, 0, 1, 0], 0.3, 0.35)
    """
    with torch.no_grad():
        highest_neg = torch.where(neg_mask, sim, float("-inf")).amax(dim=1)
        lowest_pos = torch.where(pos_mask, sim, float("inf")).amin(dim=1)
        hard_pos = pos_mask & (sim - epsilon < highest_neg[:, None])
        hard_neg = neg_mask & (sim + epsilon > lowest_pos[:, None])
        return hard_pos, hard_neg, lowest_pos, highest_neg


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
        normed, sim = cosine_matrix(embeddings)
        pos_mask, neg_mask = label_masks(labels)
        hard_pos, hard_neg, lowest_pos, highest_neg = ms_mine(sim.detach(), pos_mask, neg_mask, self.epsilon)
        # The hardest pair of each kind is always mined when any is, so it gives the exact row max.
        any_pos = lowest_pos - self.epsilon < highest_neg  # a row mines something iff its hardest pair is
        any_neg = highest_neg + self.epsilon > lowest_pos
        pos_max = torch.where(any_pos, -self.alpha * (lowest_pos - self.base), 0.0)
        neg_max = torch.where(any_neg, self.beta * (highest_neg - self.base), 0.0)
        pos_loss = log1p_sum_exp(sim * -self.alpha + self.alpha * self.base, hard_pos, pos_max) / self.alpha
        neg_loss = log1p_sum_exp(sim * self.beta - self.beta * self.base, hard_neg, neg_max) / self.beta
        loss = (pos_loss + neg_loss).mean() if len(labels) else sim.sum() * 0.0
        with torch.no_grad():
            mined = torch.stack([hard_pos.sum(), hard_neg.sum()]).to(sim.dtype)
        self.last_stats = stats_from_sums(
            pair_similarity_sums(normed, labels),
            active_pairs=mined.sum(),
            mined_pos_pairs=mined[0],
            mined_neg_pairs=mined[1],
        )
        return loss
