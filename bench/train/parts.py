"""What a run is built from, checked before any training: `prepare` -> `RunParts`.

`prepare` checks everything that can be checked before work starts (names, parameters, loss x sampler
x dataset compatibility, weights on disk, readable images) and builds the run's sampler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dmlbench import samplers
from dmlbench.config import Config, ConfigError
from dmlbench.data import DatasetIndex
from dmlbench.data.scan import check_images_or_raise
from dmlbench.validation.compat import compatibility_error
from dmlbench.validation.preflight import load_index, preflight


@dataclass
class RunParts:
    """Everything `prepare` built and checked; nothing has been trained yet."""

    cfg: Config
    index: DatasetIndex
    train_positions: np.ndarray  # dataset indices of the (usable) training images
    eval_positions: np.ndarray  # dataset indices of the evaluation images (query+gallery or test)
    val_positions: np.ndarray  # dataset indices of the validation images (may be empty)
    sampler: samplers.BatchSampler
    device: torch.device
    notes: list[str]

    @property
    def loss_labels(self) -> np.ndarray:
        """Per dataset image, the label the loss sees: training class ids mapped to 0..num_classes-1 in
        ascending id order (-1 for classes without training images, which never reach the loss)."""
        return training_label_codes(self.index.labels, self.train_positions)[0]

    @property
    def num_classes(self) -> int:
        """How many classes the training images hold (what a loss's `num_classes` gets)."""
        return self.loss_harness()["num_classes"]

    def loss_harness(self) -> dict[str, int]:
        """What `losses.build` may hand a loss that asks (dmlbench.registry.LOSS_HARNESS_ARGS)."""
        return loss_harness(self.cfg, self.index, self.train_positions)


def loss_harness(cfg: Config, index: DatasetIndex, train_positions: np.ndarray) -> dict[str, int]:
    """The values of dmlbench.registry.LOSS_HARNESS_ARGS for a run of `cfg` on `index`, training on
    the images at `train_positions`."""
    return {
        "num_classes": len(np.unique(index.labels[train_positions])),
        "embedding_size": cfg.model.emb_dim,
        "num_attributes": index.num_attributes,
    }


def training_label_codes(labels: np.ndarray, train_positions: np.ndarray) -> tuple[np.ndarray, int]:
    """(contiguous code per image, number of training classes); classes absent from training get -1.

    >>> training_label_codes(np.array([7, 3, 3, 9, 5]), np.array([0, 1, 2]))
    (array([ 1,  0,  0, -1, -1]), 2)
    """
    classes = np.unique(labels[train_positions])
    codes = np.full(labels.shape, -1, dtype=np.int64)
    known = np.isin(labels, classes)
    codes[known] = np.searchsorted(classes, labels[known])
    return codes, len(classes)



def prepare(
    cfg: Config, log: Callable[[str], None] = print, check_images: bool = True, device: torch.device | None = None
) -> RunParts:
    """Build and check everything a run needs, before any training happens (`device`: preflight done)."""
    device = device or preflight(cfg)
    index = load_index(cfg)
    sampler_cls = samplers.SAMPLERS.get(cfg.sampler.name)
    harness = loss_harness(cfg, index, index.indices("train"))
    problem = compatibility_error(cfg.loss.name, sampler_cls.layout, index.num_attributes, cfg.loss.params, harness)
    if problem:
        raise ConfigError(problem)
    train_positions = index.indices("train")
    eval_splits = ("query", "gallery") if index.protocol == "query-gallery" else ("test",)
    eval_positions = np.flatnonzero(np.isin(index.splits, eval_splits))
    val_positions = index.indices("val")
    if check_images:
        train_positions = check_images_or_raise(index, train_positions, cfg.data.skip_bad_images, log)
        eval_positions = check_images_or_raise(index, eval_positions, cfg.data.skip_bad_images, log)
        if len(val_positions):
            val_positions = check_images_or_raise(index, val_positions, cfg.data.skip_bad_images, log)
    groups = None if index.groups is None else index.groups[train_positions]
    sampler = samplers.build(
        cfg.sampler.name,
        index.labels[train_positions],
        seed=cfg.seed,
        groups=groups,
        batches_per_epoch=cfg.sampler.batches_per_epoch,
        **cfg.sampler.params,
    )
    return RunParts(cfg, index, train_positions, eval_positions, val_positions, sampler, device, list(index.notes))

