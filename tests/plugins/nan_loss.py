"""A plugin loss that turns NaN after a number of calls: the trainer's NaN guard must stop the run."""

import torch

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import cosine_matrix


@register("nan-after")
class NanAfterLoss(MetricLoss):
    def __init__(self, calls: int = 3) -> None:
        super().__init__()
        self.calls = calls
        self.seen = 0

    def forward(self, embeddings, labels, *, tuples=None, attr_logits=None, attr_targets=None):
        self.seen += 1
        _, sim = cosine_matrix(embeddings)
        loss = (1 - sim).mean()
        self.last_stats = {"active_pairs": float(sim.numel()), "pos_sim": 0.0, "neg_sim": 0.0, "degenerate": 0.0}
        return loss * torch.nan if self.seen > self.calls else loss
