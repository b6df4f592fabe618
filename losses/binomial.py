"""Binomial deviance (BDL, Yi et al. 2014 as in BIER) and SGML's soft binomial deviance (SBDL).

BDL:  mean_P softplus(-alpha (s - beta)) + mean_N softplus(C alpha (s - beta))
SBDL: mean_P softplus(-alpha ((s + g) - beta)) + mean_N softplus(C alpha ((s - g) - beta))   (SGML eqs. 6-8)
where s is the cosine of the embeddings and g (SGML eq. 5) the cosine of the predicted attribute
probabilities sigmoid(attr_logits). Both add ``lambda_attr * BCE(attr_logits, attr_targets)``, BCE the
mean over the B x K attribute entries (SGML eq. 2 sums over the K attributes: ``lambda_attr`` is K times
the paper's lambda).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    attribute_bce,
    check_tuples,
    cosine_matrix,
    label_masks,
    pair_similarity_sums,
    require_attributes,
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


def dense_binomial_deviance_terms(
    sim: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    C: float,
    g: torch.Tensor | None = None,
    num_pos: torch.Tensor | None = None,
    num_neg: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same two means over a (B, B) similarity matrix and its pair masks, with SBDL's shift by the
    attribute similarity ``g`` (+g on positives, -g on negatives) when given.

    One softplus pass over the matrix; the per-kind means are dot products with weight matrices, so
    no masked copies are made. ``num_pos``/``num_neg`` may be passed when already known.

    >>> sim = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    >>> eye = torch.eye(2, dtype=torch.bool)
    >>> p, n = dense_binomial_deviance_terms(sim, ~eye, torch.zeros(2, 2, dtype=torch.bool), alpha=2, beta=0.5, C=25)
    >>> round(p.item(), 4), n.item()
    (0.6931, 0.0)
    """
    scale = torch.where(pos_mask, -alpha, C * alpha).to(sim.dtype)
    shifted = sim if g is None else torch.addcmul(sim, torch.where(pos_mask, 1.0, -1.0).to(sim.dtype), g)
    terms = F.softplus(torch.addcmul(scale * -beta, scale, shifted)).flatten()
    num_pos = pos_mask.sum() if num_pos is None else num_pos
    num_neg = neg_mask.sum() if num_neg is None else num_neg
    pos_weight = torch.where(pos_mask, 1.0 / num_pos.clamp_min(1), 0.0).to(sim.dtype).flatten()
    neg_weight = torch.where(neg_mask, 1.0 / num_neg.clamp_min(1), 0.0).to(sim.dtype).flatten()
    return torch.dot(terms, pos_weight), torch.dot(terms, neg_weight)


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
    normed, sim = cosine_matrix(embeddings)
    pos_mask, neg_mask = label_masks(labels)
    sums = pair_similarity_sums(normed, labels)
    g = None
    if attr_probs is not None:
        attr_normed, g = cosine_matrix(attr_probs)
        g_sums = pair_similarity_sums(attr_normed, labels)
        g_stats = {"g_pos": g_sums[2] / g_sums[0].clamp_min(1), "g_neg": g_sums[3] / g_sums[1].clamp_min(1)}
    pos, neg = dense_binomial_deviance_terms(
        sim, pos_mask, neg_mask, alpha=alpha, beta=beta, C=C, g=g, num_pos=sums[0], num_neg=sums[1]
    )
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
