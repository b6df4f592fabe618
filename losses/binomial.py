"""Binomial deviance (BDL, Yi et al. 2014 as in BIER) and SGML's soft binomial deviance (SBDL).

BDL:  mean_P softplus(-alpha (s - beta)) + mean_N softplus(C alpha (s - beta))
SBDL: mean_P softplus(-alpha ((s + g) - beta)) + mean_N softplus(C alpha ((s - g) - beta))   (SGML eqs. 6-8)
where s is the cosine of the embeddings and g (SGML eq. 5) the cosine of the predicted attribute
probabilities sigmoid(attr_logits). Both add ``lambda_attr * BCE(attr_logits, attr_targets)``, BCE the
mean over the B x K attribute entries (SGML eq. 2 sums over the K attributes: ``lambda_attr`` is K times
the paper's lambda).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    attribute_bce,
    check_tuples,
    gram_input_grad,
    mask_pairs_,
    pair_similarity_sums,
    require_attributes,
    same_label_pairs,
    softplus_sum,
    stats_from_sums,
    tuple_similarities,
    tuple_sums,
)


def binomial_deviance_terms(
    sim_pos: torch.Tensor, sim_neg: torch.Tensor, *, alpha: float, beta: float, C: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean positive and mean negative binomial deviance over vectors of pair similarities (0 if empty).

    >>> p, n = binomial_deviance_terms(torch.tensor([0.5]), torch.tensor([0.5]), alpha=2, beta=0.5, C=25)
    >>> round(p.item(), 4), round(n.item(), 4)  # softplus(0) = log 2
    (0.6931, 0.6931)
    """
    pos = F.softplus(-alpha * (sim_pos - beta)).sum() / max(sim_pos.numel(), 1)
    neg = F.softplus((C * alpha) * (sim_neg - beta)).sum() / max(sim_neg.numel(), 1)
    return pos, neg


class DenseDeviance(torch.autograd.Function):
    """(similarities of the positive pairs ``rows``/``cols``, ``sum over negative pairs of softplus(C alpha
    (t - beta))``) for t = x_i . (x_j * sign): x the normalised embeddings (SBDL: with the normalised
    attribute probabilities appended and ``sign`` -1 on them, so t = s - g). One GEMM forward, one backward
    (the matrix is symmetric: dL/dx = 2 (G @ x) * sign, G = C alpha sigmoid(Z) plus the positives' gradient);
    in-place passes over Z, which is all that is kept."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, sign: torch.Tensor | None, rows: torch.Tensor, cols: torch.Tensor,
        scale: float, beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        z = x @ (x if sign is None else x * sign).T
        sim_pos = z[rows, cols]
        mask_pairs_(z.sub_(beta).mul_(scale), rows, cols, -torch.inf)  # softplus(-inf) = sigmoid(-inf) = 0
        ctx.z, ctx.scale, ctx.pairs = z, scale, (rows, cols)
        ctx.save_for_backward(x, sign)
        return sim_pos, softplus_sum(z)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pos: torch.Tensor, grad_neg: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, sign = ctx.saved_tensors
        grad_sim = torch.sigmoid(ctx.z).mul_(grad_neg * ctx.scale)
        grad_x = gram_input_grad(grad_sim, x, ctx.pairs[0], ctx.pairs[1], grad_pos, symmetric=True)
        return (grad_x if sign is None else grad_x.mul_(sign)), None, None, None, None, None


def _binomial_forward(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    tuples: torch.Tensor | None,
    attr_probs: torch.Tensor | None,
    *,
    alpha: float,
    beta: float,
    C: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Shared BDL/SBDL body: (pos term, neg term, similarity sums, g stats). ``attr_probs`` None = BDL."""
    g_stats: dict[str, torch.Tensor] = {}
    if tuples is not None:
        normed = F.normalize(embeddings, dim=1)
        tuples = check_tuples(tuples, len(embeddings))
        sim_ap, sim_an = tuple_similarities(normed, tuples)
        sums = tuple_sums(sim_ap, sim_an)
        sim_pos, sim_neg = sim_ap, sim_an
        if attr_probs is not None:
            g_ap, g_an = tuple_similarities(F.normalize(attr_probs, dim=1), tuples)
            sim_pos, sim_neg = sim_ap + g_ap, sim_an - g_an
            g_sums = tuple_sums(g_ap, g_an)
            g_stats = {
                "g_pos": g_sums[2] / g_sums[0].clamp_min(1),
                "g_neg": g_sums[3] / g_sums[1].clamp_min(1),
            }
        pos, neg = binomial_deviance_terms(sim_pos, sim_neg, alpha=alpha, beta=beta, C=C)
        return pos, neg, sums, g_stats
    normed = F.normalize(embeddings, dim=1)
    rows, cols = same_label_pairs(labels)
    sums = pair_similarity_sums(normed, labels)
    x, sign = normed, None
    if attr_probs is not None:
        attr_normed = F.normalize(attr_probs, dim=1)
        g_sums = pair_similarity_sums(attr_normed, labels)
        g_stats = {"g_pos": g_sums[2] / g_sums[0].clamp_min(1), "g_neg": g_sums[3] / g_sums[1].clamp_min(1)}
        x = torch.cat([normed, attr_normed], dim=1)  # negatives need s - g: one GEMM over [e, a] . [e, -a]
        sign = torch.cat([normed.new_ones(normed.shape[1]), normed.new_full((attr_normed.shape[1],), -1.0)])
    sim_pos, neg_sum = DenseDeviance.apply(x, sign, rows, cols, C * alpha, beta)
    if attr_probs is not None:  # positives need s + g = (s - g) + 2 g, g of the few positive pairs
        sim_pos = sim_pos + 2.0 * (attr_normed[rows] * attr_normed[cols]).sum(1)
    pos = F.softplus(-alpha * (sim_pos - beta)).sum() / max(len(sim_pos), 1)
    neg = neg_sum / sums[1].clamp_min(1)
    return pos, neg, sums, g_stats


@register("bdl")
class BinomialDevianceLoss(MetricLoss):
    """Binomial deviance on cosine similarity (defaults: SGML In-Shop alpha=2, beta=0.5; BIER's C=25).

    SGML uses alpha=3, beta=0.1 on CUB. ``lambda_attr > 0`` adds ``lambda_attr * BCE`` on the attribute
    branch: SGML's *multitask* baseline (the attribute and metric tasks share nothing else).
    With predefined triplets (image-wise sampling) only their 2T pairs are used.
    """

    accepts_tuples = True

    def __init__(
        self, alpha: float = 2.0, beta: float = 0.5, C: float = 25.0, lambda_attr: float = 0.0
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.C, self.lambda_attr = (
            float(alpha),
            float(beta),
            float(C),
            float(lambda_attr),
        )
        # Per instance: only the multitask setting (lambda_attr > 0) needs attributes.
        self.needs_attributes = self.lambda_attr > 0  # type: ignore[misc]

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pos, neg, sums, _ = _binomial_forward(
            embeddings, labels, tuples, None, alpha=self.alpha, beta=self.beta, C=self.C
        )
        total = pos + neg
        attr = total.new_zeros(())
        if self.lambda_attr > 0:
            require_attributes("bdl (lambda_attr > 0)", attr_logits, attr_targets)
            assert attr_logits is not None and attr_targets is not None
            attr = attribute_bce(attr_logits, attr_targets)
            total = total + self.lambda_attr * attr
        self.last_stats = stats_from_sums(
            sums, active_pairs=sums[0] + sums[1], pos_loss=pos, neg_loss=neg, attr_loss=attr
        )
        return total


@register("sbdl")
class SoftBinomialDevianceLoss(MetricLoss):
    """SGML's soft binomial deviance (eqs. 5-8) plus ``lambda_attr * BCE`` (eq. 1, L_SGML).

    Defaults: alpha=2, beta=0.5 (SGML, In-Shop; CUB: alpha=3, beta=0.1). C=1 because eq. 8 has no cost
    factor. The paper gives no value for lambda; ``lambda_attr=1.0`` (equal weight) is our choice.
    Units: our BCE is the mean over the B x K (image, attribute) entries, SGML eq. 2 sums it over the K
    attributes of an image, so ``lambda_attr`` = K x the paper's lambda (per image, the batch averaged;
    B x K x the paper's lambda if a batch is summed instead).
    ``detach_g=True`` (default) stops gradient through the attribute similarity g, so the attribute
    branch learns only from the BCE term; ``False`` lets the metric loss shape the attributes too.
    """

    needs_attributes = True
    accepts_tuples = True

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 0.5,
        C: float = 1.0,
        lambda_attr: float = 1.0,
        detach_g: bool = True,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.C, self.lambda_attr = (
            float(alpha),
            float(beta),
            float(C),
            float(lambda_attr),
        )
        self.detach_g = bool(detach_g)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        require_attributes("sbdl", attr_logits, attr_targets, targets=self.lambda_attr > 0)
        assert attr_logits is not None
        probs = torch.sigmoid(attr_logits.detach() if self.detach_g else attr_logits)
        pos, neg, sums, g_stats = _binomial_forward(
            embeddings, labels, tuples, probs, alpha=self.alpha, beta=self.beta, C=self.C
        )
        total = pos + neg
        attr = total.new_zeros(())
        if self.lambda_attr > 0:
            assert attr_targets is not None
            attr = attribute_bce(attr_logits, attr_targets)
            total = total + self.lambda_attr * attr
        self.last_stats = stats_from_sums(
            sums, active_pairs=sums[0] + sums[1], pos_loss=pos, neg_loss=neg, attr_loss=attr, **g_stats
        )
        return total
