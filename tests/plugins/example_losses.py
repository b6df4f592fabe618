"""A complete new loss, registered from outside the repository (`--plugin example_losses`)."""

import torch
import torch.nn.functional as F

from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import cosine_matrix, label_masks


@register("cosine-margin")
class CosineMarginLoss(MetricLoss):
    """Pull positives to cosine 1; push negatives below `margin`."""

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings, labels, *, tuples=None, attr_logits=None, attr_targets=None):
        _, sim = cosine_matrix(embeddings)  # normalises inside
        pos, neg = label_masks(labels)  # same label (i != j) / different label
        pos_loss = torch.where(pos, 1 - sim, 0.0).sum() / pos.sum().clamp_min(1)
        neg_loss = torch.where(neg, F.relu(sim - self.margin), 0.0).sum() / neg.sum().clamp_min(1)
        s = sim.detach()
        self.last_stats = {"active_pairs": float(pos.sum() + neg.sum()),
                           "pos_sim": float(s[pos].mean()) if pos.any() else 0.0,
                           "neg_sim": float(s[neg].mean()) if neg.any() else 0.0,
                           "degenerate": float(not (pos.any() and neg.any()))}
        return pos_loss + neg_loss
