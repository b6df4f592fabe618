"""Shared machinery of the registered samplers: a class index, per-epoch plans, state and resume.

Every sampler here builds the whole epoch at once (vectorised numpy) as an `EpochPlan` from
``np.random.default_rng([seed, epoch])`` alone. So the batches of epoch ``e`` never depend on
whether earlier epochs were iterated, and resuming is exact: ``iter_epoch(e, start=b)`` yields
the very batches ``b, b+1, ...`` an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from dmlbench.config import ConfigError
from dmlbench.errors import unknown_value
from dmlbench.samplers.base import Batch, BatchSampler

SmallClassPolicy = Literal["replace", "take-all"]
SMALL_CLASS_POLICIES: tuple[str, ...] = ("replace", "take-all")


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: a function of (seed, epoch) only.

    Negative seeds are folded into [0, 2**64) because `SeedSequence` takes non-negative entropy.

    >>> int(epoch_rng(3, 1).integers(1000)) == int(epoch_rng(3, 1).integers(1000))
    True
    >>> int(epoch_rng(-1, 0).integers(1 << 30)) == int(epoch_rng(2**64 - 1, 0).integers(1 << 30))
    True
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return np.random.default_rng([int(seed) % (1 << 64), int(epoch)])


def check_policy(policy: str) -> None:
    if policy not in SMALL_CLASS_POLICIES:
        raise ConfigError(unknown_value("small_class_policy", policy, SMALL_CLASS_POLICIES))


def check_positive_int(name: str, value: int, minimum: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"sampler parameter {name} must be an integer >= {minimum} ({why}), got {value!r}")


@dataclass(frozen=True)
class ClassIndex:
    """Images grouped by class, for vectorised "pick the r-th image of class c" look-ups.

    >>> ci = ClassIndex.from_labels(np.array([7, 3, 7, 7, 3, 9]))
    >>> ci.counts.tolist(), ci.order.tolist(), ci.starts.tolist()
    ([2, 3, 1], [1, 4, 0, 2, 3, 5], [0, 2, 5])
    >>> ci.rank.tolist()  # position of each image inside its class block of `order`
    [0, 0, 1, 2, 1, 0]
    """

    codes: np.ndarray  # (n,) class code per image, 0..C-1
    counts: np.ndarray  # (C,) images per class
    starts: np.ndarray  # (C,) where class c begins in `order`
    order: np.ndarray  # (n,) image positions sorted by class (stable)
    rank: np.ndarray  # (n,) position of image i inside its class block

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> ClassIndex:
        _, codes = np.unique(labels, return_inverse=True)
        codes = codes.astype(np.int64).ravel()
        counts = np.bincount(codes).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        order = np.argsort(codes, kind="stable").astype(np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order), dtype=np.int64) - starts[codes[order]]
        return cls(codes=codes, counts=counts, starts=starts, order=order, rank=rank)

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    def shuffled_order(self, rng: np.random.Generator) -> np.ndarray:
        """`order` with every class block randomly permuted (class blocks stay where they are).

        One float argsort: the class code is the integer part, a random key the fraction.
        """
        keys = self.codes + rng.random(len(self.codes))
        return np.argsort(keys).astype(np.int64)


def occurrence_numbers(slot_classes: np.ndarray) -> np.ndarray:
    """For each slot, how many earlier slots hold the same class (0 for the first one).

    >>> occurrence_numbers(np.array([4, 1, 4, 4, 1])).tolist()
    [0, 0, 1, 2, 1]
    """
    order = np.argsort(slot_classes, kind="stable")
    sorted_classes = slot_classes[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_classes[1:] != sorted_classes[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    occurrence = np.empty(len(order), dtype=np.int64)
    occurrence[order] = np.arange(len(order)) - group_start
    return occurrence


def pick_images(
    classes: ClassIndex,
    shuffled: np.ndarray,
    slot_classes: np.ndarray,
    images_per_class: int,
    policy: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Images for each (batch, class) slot: returns (flat positions, images per slot).

    The j-th slot of class c in the epoch takes ranks ``j*K, j*K+1, ..., j*K+K-1`` (mod the class
    size) of the class's shuffled block: K distinct images when the class has >= K, and the next
    slot of the same class continues where this one stopped, so an epoch cycles through a class's
    images before repeating any. A class with fewer than K images:

    - ``replace``: fills its K slots by cycling, so every image appears once and some twice or more;
    - ``take-all``: contributes all its images once (the batch is smaller than P x K).
    """
    k = images_per_class
    counts = classes.counts[slot_classes]
    occurrence = occurrence_numbers(slot_classes)
    ranks = (occurrence[:, None] * k + np.arange(k)[None, :]) % counts[:, None]
    picked = shuffled[classes.starts[slot_classes][:, None] + ranks]
    if policy == "take-all":
        keep = np.arange(k)[None, :] < counts[:, None]
        return picked[keep], np.minimum(counts, k)
    return picked.ravel(), np.full(len(slot_classes), k, dtype=np.int64)


@dataclass(frozen=True)
class EpochPlan:
    """All batches of one epoch: batch b is ``indices[offsets[b]:offsets[b + 1]]``."""

    indices: np.ndarray  # read-only, concatenated positions into `labels`
    offsets: np.ndarray  # (B + 1,)
    tuples: np.ndarray | None  # (N, 3) positions into each batch, shared by all batches (image-wise)
    stats: dict[str, float]

    def batch(self, b: int) -> Batch:
        # Copies: the consumer owns (and may edit, or hand to torch.from_numpy) what it gets, while the
        # cached plan stays intact for epoch_stats and a replay of the epoch.
        tuples = None if self.tuples is None else self.tuples.copy()
        return Batch(indices=self.indices[self.offsets[b] : self.offsets[b + 1]].copy(), tuples=tuples)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # the cached plan is shared: nothing may edit it in place
    return array


def fraction_seen(indices: np.ndarray, num_images: int) -> float:
    seen = np.zeros(num_images, dtype=bool)
    seen[indices] = True
    return float(seen.mean())


def grouped_stats(
    classes: ClassIndex,
    slot_classes: np.ndarray,
    slot_sizes: np.ndarray,
    slots_per_batch: np.ndarray,
    images_per_class: int,
) -> dict[str, float]:
    """Per-epoch stats of a P x K style plan (slots = (batch, class) groups of images).

    ``positives_per_anchor`` counts *distinct other images* of the anchor's class in its batch
    (a repeat of the anchor itself, from the ``replace`` policy, is not a positive).
    """
    distinct = np.minimum(classes.counts[slot_classes], slot_sizes)
    positions = slot_sizes.sum()
    num_batches = len(slots_per_batch)
    return {
        "classes_per_batch": float(slots_per_batch.mean()),
        "images_per_batch": float(positions / num_batches),
        "positives_per_anchor": float((slot_sizes * (distinct - 1)).sum() / positions),
        "anchors_without_positive": float((slot_sizes * (distinct == 1)).sum() / positions),
        "short_class_slots": float((classes.counts[slot_classes] < images_per_class).mean()),
        "repeated_images_per_batch": float((slot_sizes - distinct).sum() / num_batches),
    }


class PlannedSampler(BatchSampler):
    """A `BatchSampler` whose epoch is a precomputed `EpochPlan` (the last one is cached)."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        groups: np.ndarray | None = None,
        batches_per_epoch: int | None = None,
    ) -> None:
        super().__init__(labels, seed=seed, groups=groups, batches_per_epoch=batches_per_epoch)
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise ConfigError(f"sampler '{self.name}' needs a non-empty 1-D array of training labels")
        if batches_per_epoch is not None:
            check_positive_int("batches_per_epoch", batches_per_epoch, 1, "an epoch needs a batch")
        self.classes = ClassIndex.from_labels(self.labels)
        if self.classes.num_classes < 2:
            raise ConfigError(f"sampler '{self.name}' needs at least 2 training classes (negatives), got 1")
        self.position: tuple[int, int] = (0, 0)  # (epoch, next batch) of the last batch handed out
        self._cached: tuple[int, int, EpochPlan] | None = None  # (seed, epoch, plan)

    # --- what a subclass provides -------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The user-facing parameters (recorded in the state so a resume can check them)."""
        raise NotImplementedError

    def default_batches_per_epoch(self) -> int:
        raise NotImplementedError

    def make_plan(self, rng: np.random.Generator, num_batches: int) -> EpochPlan:
        raise NotImplementedError

    # --- the BatchSampler interface -------------------------------------------------------------
    def __len__(self) -> int:
        return (
            self._batches_per_epoch
            if self._batches_per_epoch is not None
            else self.default_batches_per_epoch()
        )

    def plan(self, epoch: int) -> EpochPlan:
        if self._cached is not None and self._cached[:2] == (self.seed, epoch):
            return self._cached[2]
        plan = self.make_plan(epoch_rng(self.seed, epoch), len(self))
        self._cached = (self.seed, epoch, plan)
        return plan

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        num_batches = len(self)
        if not 0 <= start <= num_batches:
            raise ValueError(f"start batch {start} is outside epoch of {num_batches} batches")
        plan = self.plan(epoch)  # built now, so errors surface at the call, not at the first next()
        return self._yield(plan, epoch, start)

    def _yield(self, plan: EpochPlan, epoch: int, start: int) -> Iterator[Batch]:
        for b in range(start, len(plan)):
            self.position = (epoch, b + 1)  # set before yielding: a checkpoint taken now resumes after b
            yield plan.batch(b)

    def epoch_stats(self, epoch: int) -> dict[str, float]:
        """Per-epoch log (fraction_images_seen, classes_per_batch, positives_per_anchor, ...)."""
        return dict(self.plan(epoch).stats)

    def resume_point(self) -> tuple[int, int]:
        """(epoch, batch) to continue from: the next epoch's start once an epoch was finished."""
        epoch, next_batch = self.position
        return (epoch + 1, 0) if next_batch >= len(self) else (epoch, next_batch)

    def fingerprint(self) -> str:
        """Hash of what the batches are drawn from; a resume onto other data is refused."""
        digest = hashlib.sha1(np.ascontiguousarray(self.labels).tobytes())
        if self.groups is not None:
            digest.update(repr(np.asarray(self.groups).tolist()).encode())
        return digest.hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        epoch, next_batch = self.position
        return {
            "seed": self.seed,
            "sampler": self.name,
            "params": self.params(),
            "batches_per_epoch": len(self),
            "num_images": len(self.labels),
            "fingerprint": self.fingerprint(),
            "epoch": epoch,
            "next_batch": next_batch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {
            "sampler": self.name,
            "params": self.params(),
            "batches_per_epoch": len(self),
            "num_images": len(self.labels),
            "fingerprint": self.fingerprint(),
        }
        differ = [
            f"{k}: saved {state[k]!r}, now {v!r}" for k, v in expected.items() if k in state and state[k] != v
        ]
        if differ:
            raise ConfigError(
                "cannot resume the sampler: the saved state was made with other settings or data ("
                + "; ".join(differ)
                + "). Resume with the original config, or start a new run."
            )
        self.seed = int(state["seed"])
        self.position = (int(state.get("epoch", 0)), int(state.get("next_batch", 0)))
        self._cached = None


def ceil_div(a: int, b: int) -> int:
    """
    >>> ceil_div(7, 3), ceil_div(6, 3)
    (3, 2)
    """
    return -(-a // b)
