"""Image-wise sampling (SGML Sec. IV, Fig. 6a): every training image in turn is an anchor.

Each anchor gets one random positive (another image of its class) and one random negative (an image
of any other class, uniformly over images). A batch of N anchors holds ``3N`` positions
``[anchors..., positives..., negatives...]`` and the predefined triplets ``(i, N + i, 2N + i)``, so a
pair-based loss uses exactly those 2N pairs (N positive, N negative), never all pairs of the batch.

Singleton classes (one training image) cannot give an anchor a distinct positive: they are
*skipped as anchors* but still drawn as negatives; ``epoch_stats`` counts them
(``singleton_images``). An epoch is, by default, one pass over the anchor-eligible images,
``ceil(eligible / N)`` batches; the last batch is topped up from a fresh permutation so every batch
has exactly N anchors. A longer epoch (``batches_per_epoch``) chains further permutations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmlbench.config import ConfigError
from dmlbench.samplers import register
from dmlbench.samplers.planned import (
    EpochPlan,
    PlannedSampler,
    ceil_div,
    check_positive_int,
    fraction_seen,
    read_only,
)


@register("image-wise")
class ImageWiseSampler(PlannedSampler):
    """N anchors + N positives + N negatives per batch, with their predefined triplets."""

    name = "image-wise"
    layout = "tuples"

    def __init__(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        groups: np.ndarray | None = None,
        batches_per_epoch: int | None = None,
        anchors_per_batch: int = 60,
    ) -> None:
        super().__init__(labels, seed=seed, groups=groups, batches_per_epoch=batches_per_epoch)
        check_positive_int("anchors_per_batch", anchors_per_batch, 1, "a batch needs an anchor")
        self.anchors_per_batch = int(anchors_per_batch)
        has_positive = self.classes.counts[self.classes.codes] >= 2
        self.eligible = np.flatnonzero(has_positive).astype(np.int64)  # images that can be anchors
        if len(self.eligible) == 0:
            raise ConfigError(
                "image-wise sampling needs at least one class with 2+ training images (an anchor needs a "
                "positive); every class here is a singleton"
            )
        n = self.anchors_per_batch
        self.tuples = read_only(np.stack([np.arange(n), n + np.arange(n), 2 * n + np.arange(n)], axis=1))

    def params(self) -> dict[str, Any]:
        return {"anchors_per_batch": self.anchors_per_batch}

    def default_batches_per_epoch(self) -> int:
        return ceil_div(len(self.eligible), self.anchors_per_batch)

    def make_plan(self, rng: np.random.Generator, num_batches: int) -> EpochPlan:
        ci, n = self.classes, self.anchors_per_batch
        total = num_batches * n
        passes = ceil_div(total, len(self.eligible))
        anchors = rng.permuted(np.tile(self.eligible, (passes, 1)), axis=1).ravel()[:total]
        cls = ci.codes[anchors]
        counts = ci.counts[cls]
        # Positive: a uniform rank among the other count-1 images of the class (skip the anchor's own).
        r = rng.integers(0, counts - 1)
        r += r >= ci.rank[anchors]
        positives = ci.order[ci.starts[cls] + r]
        # Negative: uniform over the n - count images outside the class block of `order`.
        j = rng.integers(0, len(ci.codes) - counts)
        j += np.where(j >= ci.starts[cls], counts, 0)
        negatives = ci.order[j]
        indices = (
            np.stack([anchors, positives, negatives]).reshape(3, num_batches, n).transpose(1, 0, 2).ravel()
        )
        offsets = np.arange(num_batches + 1, dtype=np.int64) * 3 * n
        return EpochPlan(read_only(indices), offsets, self.tuples, self._stats(indices, num_batches))

    def _stats(self, indices: np.ndarray, num_batches: int) -> dict[str, float]:
        n = self.anchors_per_batch
        per_batch = np.sort(self.classes.codes[indices].reshape(num_batches, 3 * n), axis=1)
        classes_per_batch = (np.diff(per_batch, axis=1) != 0).sum(axis=1) + 1
        anchors = indices.reshape(num_batches, 3, n)[:, 0].ravel()
        return {
            "fraction_images_seen": fraction_seen(indices, len(self.labels)),
            "fraction_anchors_covered": float(len(np.unique(anchors)) / len(self.eligible)),
            "classes_per_batch": float(classes_per_batch.mean()),
            "images_per_batch": float(3 * n),
            "positives_per_anchor": float(len(self.tuples) / n),  # predefined: exactly one each
            "negatives_per_anchor": float(len(self.tuples) / n),
            "singleton_images": float(len(self.labels) - len(self.eligible)),
        }
