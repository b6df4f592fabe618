"""`dmlbench bench-train`: is the input pipeline the bottleneck of the training step?

Measures images/second of the full training step fed by the real input pipeline (JPEG decode,
augmentation, DataLoader workers, host->device copy), beside the same step on batches pre-loaded
onto the device (the model-bound ceiling). Their ratio near 1 means the model, not the pipeline,
limits throughput; well below 1 means more `train.num_workers` (or faster decoding) would help.

With `train.distributed` under a launcher (torchrun) it measures the data-parallel step: images/s
of the global batch over all processes, so runs with 1 and N processes give the scaling efficiency.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from dmlbench.config import Config
from dmlbench.data.dataset import ImageDataset
from dmlbench.train import (
    LoadedBatch,
    Trainer,
    batch_tensors,
    build_trainer,
    distributed,
    image_transform,
    prepare,
    run_schedule,
    training_loader,
)
from dmlbench.validation.preflight import preflight


@dataclass
class ThroughputResult:
    amp: str
    compile: str
    pipeline_images_per_s: float
    tensors_images_per_s: float
    processes: int = 1
    reports: bool = True  # this process prints the result (process 0 of a data-parallel measurement)

    @property
    def ratio(self) -> float:
        return self.pipeline_images_per_s / self.tensors_images_per_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: Config, steps: int, warmup: int) -> ThroughputResult:
    """Throughput of `cfg`'s training step; a data-parallel one stays in its process group (several
    settings are measured in turn: the caller leaves it, `distributed.leave`)."""
    world = distributed.world_for(cfg.train.distributed)
    device = distributed.join(world, preflight(cfg))
    parts = prepare(cfg, log=lambda _line: None, check_images=False, device=device)
    trainer: Trainer = build_trainer(parts)
    trainer.model.train()
    shard = None
    if world.distributed:
        trainer.parallel = distributed.wrap_model(trainer.model, world, device, list(trainer.loss_fn.parameters()))
        shard = (world.rank, world.size)
    needed = steps + warmup
    scheduled = list(itertools.islice(run_schedule(parts.sampler, epochs=needed)(), needed))
    train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
    labels_all = torch.from_numpy(parts.loss_labels)
    attributes = None if parts.index.attributes is None else torch.from_numpy(parts.index.attributes.astype(np.float32))

    def run_step(i: int, loaded: LoadedBatch) -> None:
        trainer.step(*batch_tensors(loaded, labels_all, attributes, device), where=f"bench step {i}")

    # 1. The real pipeline: exactly the training run's loader.
    images_seen = 0
    start = 0.0
    for i, loaded in enumerate(training_loader(cfg, train_set, lambda: iter(scheduled), device, shard)):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        run_step(i, loaded)
        if i >= warmup:
            images_seen += len(scheduled[i].batch.indices)  # the global batch
    _sync(device)
    pipeline = images_seen / (time.perf_counter() - start)

    # 2. The same steps on pre-loaded device tensors (decode and copy excluded).
    first = scheduled[:8]
    preloaded = [
        loaded._replace(images=loaded.images.to(device))
        for loaded in training_loader(cfg, train_set, lambda: iter(first), device, shard)
    ]
    images_seen = 0
    for i in range(needed):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        loaded = preloaded[i % len(preloaded)]
        run_step(i, loaded)
        if i >= warmup:
            images_seen += len(first[i % len(first)].batch.indices)
    _sync(device)
    tensors = images_seen / (time.perf_counter() - start)
    return ThroughputResult(cfg.train.amp, cfg.train.compile, pipeline, tensors, world.size, world.is_main)
