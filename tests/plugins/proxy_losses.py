"""Plugin losses with parameters, for the issue-19 tests: harness arguments, lr multiplier, a missing
`has_parameters`, typed parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss


def _stats() -> dict[str, float]:
    return {"active_pairs": 1.0, "pos_sim": 0.0, "neg_sim": 0.0, "degenerate": 0.0}


@register("proxy-nca-test")
class ProxyNCA(MetricLoss):
    """Softmax over cosine to one proxy per class: needs num_classes and embedding_size."""

    has_parameters = True
    lr_multiplier = 100.0

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1) -> None:
        super().__init__()
        self.num_classes, self.embedding_size, self.margin = num_classes, embedding_size, margin
        self.proxies = torch.nn.Parameter(torch.randn(num_classes, embedding_size))

    def forward(self, embeddings, labels, *, tuples=None, attr_logits=None, attr_targets=None):  # type: ignore[no-untyped-def]
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.proxies, dim=1).T
        self.last_stats = _stats()
        return F.cross_entropy(16 * (cos - self.margin * F.one_hot(labels, self.num_classes)), labels)


@register("forgot-flag-test")
class ForgotFlag(MetricLoss):
    """Owns a trainable temperature but does not declare has_parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, embeddings, labels, *, tuples=None, attr_logits=None, attr_targets=None):  # type: ignore[no-untyped-def]
        self.last_stats = _stats()
        return (embeddings.pow(2).mean() * self.log_scale.exp()).sum()
