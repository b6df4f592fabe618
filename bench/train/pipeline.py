"""The training input pipeline: the run's schedule of batches, seeded augmentation, one DataLoader.

The DataLoader is the only reader of the sampler. Each loaded batch carries what the training step
needs besides the images (its tuples, its (epoch, step), and the sampler's state right after it was
drawn), so the loop never iterates the sampler a second time and a checkpoint records the sampler
exactly where the *consumed* batches left it, however far the loader's workers have prefetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from dmlbench import samplers
from dmlbench.config import Config
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.transforms import build_transform
from dmlbench.model import BACKBONES
from dmlbench.train.distributed import shard_rows, shard_tuples


def image_transform(cfg: Config, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The run's train or eval transform, normalised as its backbone's pretrained weights expect."""
    return build_transform(cfg.data.image_size, train, BACKBONES.get(cfg.model.backbone).input_normalization)


def augmentation_seeds(seed: int, epoch: int, step: int, count: int) -> list[int]:
    """One seed per image of a batch, from (run seed, epoch, step) alone.

    Random crops and flips are drawn from these, so they do not depend on `train.num_workers` or on
    where a killed run resumed.

    >>> augmentation_seeds(0, 1, 2, 3) == augmentation_seeds(0, 1, 2, 3) != augmentation_seeds(0, 1, 3, 3)
    True
    """
    return [int(s) for s in np.random.SeedSequence([seed, epoch, step]).generate_state(count, dtype=np.uint64)]



@dataclass(frozen=True)
class ScheduledBatch:
    """One batch of the run's schedule, where it falls, and the sampler's state once it was drawn."""

    epoch: int
    step: int
    batch: samplers.Batch
    sampler_state: dict[str, Any]  # a checkpoint taken after this step saves this: resume continues after it


@dataclass(frozen=True)
class BatchKeys:
    """What the DataLoader hands a worker for one batch: (image, augmentation seed) keys and their batch."""

    keys: list[tuple[int, int]]
    scheduled: ScheduledBatch


class LoadedBatch(NamedTuple):
    """One batch as the training loop receives it (a NamedTuple: the DataLoader pins its tensors)."""

    images: torch.Tensor
    dataset_idx: torch.Tensor  # positions into the dataset index (labels, attributes)
    tuples: torch.Tensor | None  # (T, 3) positions into the batch, or None
    epoch: int
    step: int
    sampler_state: dict[str, Any]


class SeededViews(Dataset):
    """Item (i, seed) -> `images[i]` with its random augmentation drawn from `seed` (global RNG untouched)."""

    def __init__(self, images: ImageDataset) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key
        # torchvision's transforms draw from the CPU default generator. Seeding it alone costs ~1.5 us
        # (torch.manual_seed / fork_rng also touch CUDA generators: ~100-180 us an image).
        generator = torch.random.default_generator
        saved = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.images[i]
        finally:
            generator.set_state(saved)  # the caller's RNG stream is left as it was (num_workers=0)

    def __getitems__(self, batch: BatchKeys) -> LoadedBatch:
        """A whole batch (the DataLoader calls this with what `SeededBatchKeys` yields)."""
        images, dataset_idx = default_collate([self[key] for key in batch.keys])
        scheduled = batch.scheduled
        tuples = None if scheduled.batch.tuples is None else torch.from_numpy(scheduled.batch.tuples)
        return LoadedBatch(images, dataset_idx, tuples, scheduled.epoch, scheduled.step, scheduled.sampler_state)


Schedule = Callable[[], Iterator[ScheduledBatch]]  # () -> the run's batches in training order


def run_schedule(sampler: samplers.BatchSampler, epochs: int, first_epoch: int = 0, first_step: int = 0) -> Schedule:
    """Every remaining batch of a run, from `first_step` of `first_epoch` on."""

    def schedule() -> Iterator[ScheduledBatch]:
        for epoch in range(first_epoch, epochs):
            start = first_step if epoch == first_epoch else 0
            for step, batch in enumerate(sampler.iter_epoch(epoch, start=start), start=start):
                yield ScheduledBatch(epoch, step, batch, sampler.state_dict())

    return schedule


class SeededBatchKeys:
    """The DataLoader's batch_sampler: each scheduled batch as (image, augmentation seed) keys for SeededViews."""

    def __init__(self, schedule: Schedule, seed: int, shard: tuple[int, int] | None = None) -> None:
        self.schedule = schedule
        self.seed = seed
        self.shard = shard  # (rank, processes) of a data-parallel run: load only that shard of each batch

    def __iter__(self) -> Iterator[BatchKeys]:
        for scheduled in self.schedule():
            indices = scheduled.batch.indices
            # Seeds of the whole global batch, then the shard's: an image is augmented alike whatever the process count.
            seeds = augmentation_seeds(self.seed, scheduled.epoch, scheduled.step, len(indices))
            keys = list(zip(indices.tolist(), seeds, strict=True))
            if self.shard is not None:
                rows = shard_rows(len(indices), *self.shard)
                batch = samplers.Batch(indices[rows], shard_tuples(scheduled.batch.tuples, rows))
                keys, scheduled = keys[rows], replace(scheduled, batch=batch)
            yield BatchKeys(keys, scheduled)


def _as_loaded(batch: LoadedBatch) -> LoadedBatch:
    return batch  # SeededViews.__getitems__ already collated it


def training_loader(
    cfg: Config, train_set: ImageDataset, schedule: Schedule, device: torch.device, shard: tuple[int, int] | None = None
) -> DataLoader:
    """One DataLoader for the rest of the run, yielding `LoadedBatch`es: workers start once and prefetch
    across epoch boundaries (while the epoch's checkpoint is written) instead of being respawned every epoch.
    `shard`: (rank, processes) of a data-parallel run (`dmlbench.train.distributed`)."""
    return DataLoader(
        SeededViews(train_set),
        # torch's stubs expect index lists and list collation; ours carry keys and build LoadedBatch
        batch_sampler=SeededBatchKeys(schedule, cfg.seed, shard),  # type: ignore[arg-type]
        collate_fn=_as_loaded,  # type: ignore[arg-type]
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # workers' base seed; keeps the global RNG untouched
    )


def batch_tensors(
    loaded: LoadedBatch, labels_all: torch.Tensor, attributes: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(images, labels, tuples, attribute targets) of one loaded batch, on `device`."""
    dataset_idx = loaded.dataset_idx
    labels = labels_all[dataset_idx].to(device, non_blocking=True)
    tuples = None if loaded.tuples is None else loaded.tuples.to(device)
    attr_targets = None if attributes is None else attributes[dataset_idx].to(device, non_blocking=True)
    return loaded.images.to(device, non_blocking=True), labels, tuples, attr_targets
