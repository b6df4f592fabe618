"""pytorch-metric-learning's versions of our dense losses, registered as ``<name>-pml``.

Same parameters and the same formula as the dense default (tests check they agree to 1e-5 in float64);
kept as the reference and for side-by-side timing in ``dmlbench time-losses``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, miners, reducers

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import (
    check_distance_options,
    check_tuples,
    pair_similarity_sums,
    stats_from_sums,
    tuple_similarities,
    tuple_sums,
)
from dmlbench.losses.triplet import Distance, Reduction


def pml_distance(distance: str) -> distances.BaseDistance:
    """PML distance object for our distance names (both on L2-normalised embeddings)."""
    return distances.LpDistance() if distance == "euclidean" else distances.CosineSimilarity()


def pml_reducer(reduction: str) -> reducers.BaseReducer:
    return reducers.MeanReducer() if reduction == "mean" else reducers.AvgNonZeroReducer()


def _stats(
    embeddings: torch.Tensor, labels: torch.Tensor, tuples: torch.Tensor | None, **extra: Any
) -> dict[str, float]:
    normed = F.normalize(embeddings.detach(), dim=1)
    sums = (
        pair_similarity_sums(normed, labels)
        if tuples is None
        else tuple_sums(*tuple_similarities(normed, tuples))
    )
    return stats_from_sums(sums, **extra)


@register("contrastive-pml")
class ContrastivePML(MetricLoss):
    """PML ContrastiveLoss (reference for ``contrastive``)."""

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
        if distance == "cosine":  # d = 1 - s: margins on d become margins on the similarity
            pos_margin, neg_margin = 1.0 - pos_margin, 1.0 - neg_margin
        self.loss = losses.ContrastiveLoss(
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            distance=pml_distance(distance),
            reducer=pml_reducer(reduction),
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
        indices = None
        if tuples is not None:
            a, p, n = check_tuples(tuples, len(embeddings)).unbind(1)
            indices = (a, p, a, n)
        loss = self.loss(embeddings, labels, indices)
        self.last_stats = _stats(embeddings, labels, tuples)
        return loss


@register("triplet-pml")
class TripletPML(MetricLoss):
    """PML TripletMarginLoss on the predefined triplets (reference for ``triplet``)."""

    accepts_tuples = True
    requires_tuples = True

    def __init__(
        self, margin: float = 0.2, distance: Distance = "euclidean", reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_distance_options(distance, reduction)
        self.loss = losses.TripletMarginLoss(
            margin=margin, distance=pml_distance(distance), reducer=pml_reducer(reduction)
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
        if tuples is None:
            raise ValueError("loss 'triplet-pml' trains on predefined triplets: use an image-wise sampler")
        tuples = check_tuples(tuples, len(embeddings))
        loss = self.loss(embeddings, labels, tuple(tuples.unbind(1)))
        self.last_stats = _stats(embeddings, labels, tuples, triplets=float(len(tuples)))
        return loss


class _MinedPML(MetricLoss):
    """A PML miner followed by a PML loss on the mined tuples; subclasses set both and the stats."""

    miner: miners.BaseMiner
    loss: losses.BaseMetricLossFunction

    def mined_stats(self, mined: tuple[torch.Tensor, ...]) -> dict[str, float]:
        raise NotImplementedError

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mined = self.miner(embeddings, labels)
        loss = self.loss(embeddings, labels, mined)
        self.last_stats = _stats(embeddings, labels, None, **self.mined_stats(mined))
        return loss


@register("batch-hard-pml")
class BatchHardPML(_MinedPML):
    """PML BatchHardMiner + TripletMarginLoss (reference for ``batch-hard``)."""

    def __init__(
        self, margin: float = 0.2, distance: Distance = "euclidean", reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_distance_options(distance, reduction)
        self.miner = miners.BatchHardMiner(distance=pml_distance(distance))
        self.loss = losses.TripletMarginLoss(
            margin=margin, distance=pml_distance(distance), reducer=pml_reducer(reduction)
        )

    def mined_stats(self, mined: tuple[torch.Tensor, ...]) -> dict[str, float]:
        return {"triplets": float(len(mined[0]))}


@register("multi-similarity-pml")
class MultiSimilarityPML(_MinedPML):
    """PML MultiSimilarityMiner + MultiSimilarityLoss (reference for ``multi-similarity``)."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float = 0.1
    ) -> None:
        super().__init__()
        self.miner = miners.MultiSimilarityMiner(epsilon=epsilon)
        self.loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)

    def mined_stats(self, mined: tuple[torch.Tensor, ...]) -> dict[str, float]:
        return {"active_pairs": float(len(mined[0]) + len(mined[2]))}
