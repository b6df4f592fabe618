"""Category-balanced sampling: P x K batches drawn from a few coarse categories (hard negatives).

Each batch first picks ``categories_per_batch`` categories (In-Shop clothing type, SOP super-class,
synthshop category), with probability proportional to their number of images, then splits its
``classes_per_batch`` classes between them as evenly as their sizes allow, then takes
``images_per_class`` images per class under the same ``small_class_policy`` as batch-wise sampling
(see `dmlbench.samplers.batch_wise`). Negatives in a batch therefore share the anchor's category or one of
very few others, so they are semantically close. Within a category, classes are taken in a
per-epoch random cycle, so the epoch covers a category's classes before repeating one.

A class belongs to the category most of its images have (a class spread over several categories
is counted in ``epoch_stats`` as ``mixed_category_classes``). When the chosen categories hold fewer
than P classes in all, the batch holds them all (fewer classes: see ``classes_per_batch`` in the stats).
An epoch is, by default, ``ceil(num_images / (P * K))`` batches.
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
    check_policy,
    check_positive_int,
    fraction_seen,
    grouped_stats,
    pick_images,
    read_only,
)


def split_evenly(total: int, capacities: np.ndarray) -> np.ndarray:
    """Split `total` into parts as equal as possible, part i at most capacities[i] (water-filling).

    >>> split_evenly(41, np.array([30, 5, 30])).tolist()
    [18, 5, 18]
    >>> split_evenly(10, np.array([2, 3])).tolist()
    [2, 3]
    """
    parts = np.zeros(len(capacities), dtype=np.int64)
    remaining = total
    for i, idx in enumerate(np.argsort(capacities, kind="stable")):
        parts[idx] = min(int(capacities[idx]), remaining // (len(capacities) - i))
        remaining -= int(parts[idx])
    # Integer division leaves a remainder on the largest parts' side: hand it out one by one.
    for idx in np.argsort(-capacities, kind="stable"):
        if remaining == 0:
            break
        extra = min(remaining, int(capacities[idx] - parts[idx]))
        parts[idx] += extra
        remaining -= extra
    return parts


@register("category-balanced")
class CategoryBalancedSampler(PlannedSampler):
    """P x K batches whose classes come from `categories_per_batch` coarse categories."""

    name = "category-balanced"
    layout = "pairs"

    def __init__(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        groups: np.ndarray | None = None,
        batches_per_epoch: int | None = None,
        categories_per_batch: int = 2,
        classes_per_batch: int = 41,
        images_per_class: int = 4,
        small_class_policy: str = "replace",
    ) -> None:
        if groups is None:
            raise ConfigError(
                "sampler 'category-balanced' needs a coarse category per training image, but this dataset "
                "has no categories (its index has groups=None). Use a dataset with categories (inshop: "
                "clothing type, sop: super-class, synthshop: category) or another sampler, e.g. batch-wise."
            )
        super().__init__(labels, seed=seed, groups=groups, batches_per_epoch=batches_per_epoch)
        assert self.groups is not None
        if len(self.groups) != len(self.labels):
            raise ConfigError(f"groups has {len(self.groups)} entries for {len(self.labels)} training labels")
        check_positive_int("categories_per_batch", categories_per_batch, 1, "a batch needs a category")
        check_positive_int("classes_per_batch", classes_per_batch, 2, "a batch needs negatives")
        check_positive_int("images_per_class", images_per_class, 2, "a batch needs positive pairs")
        check_policy(small_class_policy)
        self.categories_per_batch = int(categories_per_batch)
        self.classes_per_batch = int(classes_per_batch)
        self.images_per_class = int(images_per_class)
        self.small_class_policy = small_class_policy

        _, group_codes = np.unique(self.groups, return_inverse=True)
        group_codes = group_codes.ravel()
        num_groups = int(group_codes.max()) + 1
        votes = np.bincount(
            self.classes.codes * num_groups + group_codes, minlength=self.classes.num_classes * num_groups
        )
        votes = votes.reshape(self.classes.num_classes, num_groups)
        self.class_category = votes.argmax(axis=1)  # majority category of each class
        self.mixed_category_classes = int(((votes > 0).sum(axis=1) > 1).sum())
        self.classes_in_category = np.bincount(self.class_category, minlength=num_groups)
        image_weight = np.bincount(self.class_category, weights=self.classes.counts, minlength=num_groups)
        self.category_probability = image_weight / image_weight.sum()
        # With a single category the sampler is batch-wise sampling inside it: valid, if not harder.
        self.num_categories = int((self.classes_in_category > 0).sum())

    def params(self) -> dict[str, Any]:
        return {
            "categories_per_batch": self.categories_per_batch,
            "classes_per_batch": self.classes_per_batch,
            "images_per_class": self.images_per_class,
            "small_class_policy": self.small_class_policy,
        }

    def default_batches_per_epoch(self) -> int:
        return ceil_div(len(self.labels), self.classes_per_batch * self.images_per_class)

    def make_plan(self, rng: np.random.Generator, num_batches: int) -> EpochPlan:
        ci = self.classes
        num_groups = len(self.classes_in_category)
        # Per-epoch random cycle of classes inside each category: category g owns cycle[begin[g]:...].
        cycle = np.argsort(self.class_category + rng.random(ci.num_classes))
        begin = np.concatenate([[0], np.cumsum(self.classes_in_category)[:-1]])
        pointer = np.zeros(num_groups, dtype=np.int64)
        g_per_batch = min(self.categories_per_batch, self.num_categories)
        chosen_categories = [
            rng.choice(num_groups, g_per_batch, replace=False, p=self.category_probability)
            for _ in range(num_batches)
        ]
        slot_lists: list[np.ndarray] = []
        slots_per_batch = np.empty(num_batches, dtype=np.int64)
        categories_used = np.empty(num_batches, dtype=np.int64)
        for b, cats in enumerate(chosen_categories):
            sizes = self.classes_in_category[cats]
            quota = split_evenly(self.classes_per_batch, sizes)
            parts = []
            for g, q, size in zip(cats.tolist(), quota.tolist(), sizes.tolist(), strict=True):
                if q:
                    parts.append(cycle[begin[g] + (pointer[g] + np.arange(q)) % size])
                    pointer[g] += q
            batch_classes = np.concatenate(parts)
            slot_lists.append(batch_classes)
            slots_per_batch[b] = len(batch_classes)
            categories_used[b] = int((quota > 0).sum())
        slot_classes = np.concatenate(slot_lists)
        shuffled = ci.shuffled_order(rng)
        indices, slot_sizes = pick_images(
            ci, shuffled, slot_classes, self.images_per_class, self.small_class_policy
        )
        batch_of_slot = np.repeat(np.arange(num_batches), slots_per_batch)
        images_per_batch = np.bincount(batch_of_slot, weights=slot_sizes, minlength=num_batches).astype(
            np.int64
        )
        offsets = np.concatenate([[0], np.cumsum(images_per_batch)]).astype(np.int64)
        stats = {
            "fraction_images_seen": fraction_seen(indices, len(self.labels)),
            **grouped_stats(ci, slot_classes, slot_sizes, slots_per_batch, self.images_per_class),
            "categories_per_batch": float(categories_used.mean()),
            "mixed_category_classes": float(self.mixed_category_classes),
        }
        return EpochPlan(read_only(indices), offsets, None, stats)
