"""A planted-effect loss for calibration: a built-in loss trained on partly wrong labels.

`relabelled` (a plugin: `plugins: [dmlbench.calibration.planted]`) gives a random `fraction` of each
batch's samples a label drawn from the batch's labels, then calls the loss `base` with them, so about
that fraction of the pairs it sees are wrong; `invert` also flips its sign (a drastic planted effect). More wrong pairs can only hurt: its effect has a known
direction, which is what a calibration needs.

>>> import torch
>>> loss = relabelled(base="bdl", fraction=0.0)
>>> x, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
>>> bool(torch.isclose(loss(x, y), losses.build("bdl")(x, y)))
True
"""

from __future__ import annotations

import torch

from dmlbench import losses
from dmlbench.losses.base import MetricLoss


@losses.register("relabelled")
class relabelled(MetricLoss):  # noqa: N801  (the registry name)
    """`base` trained with a random `fraction` of each batch's labels replaced (calibration only)."""

    def __init__(self, base: str = "bdl", fraction: float = 0.5, invert: bool = False) -> None:
        super().__init__()
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.inner = losses.build(base)
        self.fraction = float(fraction)
        self.sign = -1.0 if invert else 1.0  # invert: an inverted term (pulls negatives, pushes positives)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        *,
        tuples: torch.Tensor | None = None,
        attr_logits: torch.Tensor | None = None,
        attr_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.fraction > 0:
            # Drawn from the global RNG, which each epoch reseeds from (seed, epoch): deterministic runs.
            chosen = torch.rand(len(labels)) < self.fraction
            wrong = labels[torch.randint(len(labels), (len(labels),))]
            labels = torch.where(chosen.to(labels.device), wrong, labels)
        out = self.inner(embeddings, labels, tuples=tuples, attr_logits=attr_logits, attr_targets=attr_targets)
        self.last_stats = self.inner.last_stats
        return self.sign * out
