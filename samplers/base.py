"""The one interface every batch sampler follows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from dmlbench.config import ConfigError
from dmlbench.labels import class_ids


@dataclass(frozen=True)
class Batch:
    """Dataset indices of one batch, plus predefined triplets for image-wise sampling.

    ``tuples`` is (T, 3) int64 of *positions into* ``indices`` (anchor, positive, negative), or None
    when the loss pairs everything within the batch.
    """

    indices: np.ndarray
    tuples: np.ndarray | None = None


class BatchSampler:
    """Yields the batches of one epoch, deterministically from (seed, epoch).

    Constructed as ``Sampler(labels, *, seed, groups=None, batches_per_epoch=None, **params)`` where
    ``labels`` are the classes of the training images (positions = dataset indices; integers, floats or
    strings, compared exactly; ``self.labels`` holds them as int64 class ids) and ``groups``
    an optional coarse category per image (for category-aware samplers).
    """

    layout: ClassVar[Literal["pairs", "tuples"]] = "pairs"  # how the loss must read a batch

    def __init__(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        groups: np.ndarray | None = None,
        batches_per_epoch: int | None = None,
    ) -> None:
        try:  # integer labels stay as they are; floats and strings become exact class ids
            (self.labels,) = class_ids(labels)
        except ValueError as err:
            raise ConfigError(f"sampler training labels: {err}") from None
        self.seed = int(seed)
        self.groups = None if groups is None else np.asarray(groups)
        self._batches_per_epoch = batches_per_epoch

    def __len__(self) -> int:
        """Batches per epoch."""
        raise NotImplementedError

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, skipping the first `start` (for a resumed mid-epoch run)."""
        raise NotImplementedError

    def epoch_stats(self, epoch: int) -> dict[str, float]:
        """Per-epoch log: fraction of training images seen, classes per batch, positives per anchor."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
