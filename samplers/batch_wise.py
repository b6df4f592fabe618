"""Batch-wise (P x K) sampling (SGML Sec. IV, Fig. 6b): P classes, K images each; the loss pairs all.

Classes: each epoch walks random permutations of *all* classes, P at a time (P is capped at the
number of classes). A permutation's last, partial group is completed with other random classes, so
the classes of a batch are always distinct and every class appears at least once per pass.

Images: K distinct images of each class, cycling through the class before repeating an image
(see `dmlbench.samplers.planned.pick_images`). Classes with fewer than K images (In-Shop has many with 2-3,
and singletons) follow ``small_class_policy``; no class is ever dropped:

- ``"replace"`` (default): the class still fills K slots, repeating its images (each appears at
  least once). Every batch is exactly P x K. A singleton class then only supplies negatives
  (its repeats are the same image, which is not counted as a positive).
- ``"take-all"``: the class contributes all the images it has, once; the batch is smaller than P x K.

An epoch is, by default, ``ceil(num_images / (P * K))`` batches: about one pass over the images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmlbench.samplers import register
from dmlbench.samplers.planned import (
    EpochPlan,
    PlannedSampler,
    ceil_div,
    check_policy,
    check_positive_int,
    fraction_seen,
    grouped_stats,
    pick_images,
    read_only,
)


def class_passes(rng: np.random.Generator, num_classes: int, per_batch: int, num_batches: int) -> np.ndarray:
    """(num_batches, per_batch) class codes: permutations of all classes, distinct within a batch.

    >>> rows = class_passes(np.random.default_rng(0), 5, 2, 3)
    >>> rows.shape, sorted(set(rows.ravel().tolist())) == [0, 1, 2, 3, 4]
    ((3, 2), True)
    >>> all(len(set(r)) == 2 for r in rows.tolist())
    True
    """
    per_pass = ceil_div(num_classes, per_batch)
    remainder = num_classes % per_batch
    passes = []
    for _ in range(ceil_div(num_batches, per_pass)):
        perm = rng.permutation(num_classes)
        if remainder:
            # Complete the tail group with classes not already in it (they come from earlier in perm).
            fill = perm[rng.choice(num_classes - remainder, per_batch - remainder, replace=False)]
            perm = np.concatenate([perm, fill])
        passes.append(perm.reshape(per_pass, per_batch))
    return np.concatenate(passes)[:num_batches]


@register("batch-wise")
class BatchWiseSampler(PlannedSampler):
    """P classes x K images per batch; every pair of the batch is used by the loss."""

    name = "batch-wise"
    layout = "pairs"

    def __init__(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        groups: np.ndarray | None = None,
        batches_per_epoch: int | None = None,
        classes_per_batch: int = 41,
        images_per_class: int = 4,
        small_class_policy: str = "replace",
    ) -> None:
        super().__init__(labels, seed=seed, groups=groups, batches_per_epoch=batches_per_epoch)
        check_positive_int("classes_per_batch", classes_per_batch, 2, "a batch needs negatives")
        check_positive_int("images_per_class", images_per_class, 2, "a batch needs positive pairs")
        check_policy(small_class_policy)
        self.classes_per_batch = int(classes_per_batch)
        self.images_per_class = int(images_per_class)
        self.small_class_policy = small_class_policy
        # Fewer classes than P: every batch holds all of them (stated in `effective_classes_per_batch`).
        self.effective_classes_per_batch = min(self.classes_per_batch, self.classes.num_classes)

    def params(self) -> dict[str, Any]:
        return {
            "classes_per_batch": self.classes_per_batch,
            "images_per_class": self.images_per_class,
            "small_class_policy": self.small_class_policy,
        }

    def default_batches_per_epoch(self) -> int:
        return ceil_div(len(self.labels), self.classes_per_batch * self.images_per_class)

    def make_plan(self, rng: np.random.Generator, num_batches: int) -> EpochPlan:
        p = self.effective_classes_per_batch
        shuffled = self.classes.shuffled_order(rng)
        slot_classes = class_passes(rng, self.classes.num_classes, p, num_batches).ravel()
        indices, slot_sizes = pick_images(
            self.classes, shuffled, slot_classes, self.images_per_class, self.small_class_policy
        )
        offsets = np.concatenate([[0], np.cumsum(slot_sizes.reshape(num_batches, p).sum(axis=1))]).astype(
            np.int64
        )
        stats = {
            "fraction_images_seen": fraction_seen(indices, len(self.labels)),
            **grouped_stats(
                self.classes, slot_classes, slot_sizes, np.full(num_batches, p), self.images_per_class
            ),
        }
        return EpochPlan(read_only(indices), offsets, None, stats)
