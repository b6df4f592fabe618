"""`dmlbench bench-train`: is the input pipeline the bottleneck of the training step?

Measures images/second of the full training step fed by the real input pipeline (JPEG decode,
augmentation, DataLoader workers, host->device copy), beside the same step on batches pre-loaded
onto the device (the model-bound ceiling). Their ratio near 1 means the model, not the pipeline,
limits throughput; well below 1 means more `train.num_workers` (or faster decoding) would help.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch
from tabulate import tabulate

from dmlbench.config import Config, apply_overrides, load_config
from dmlbench.data.images import ImageDataset
from dmlbench.train import (
    LoadedBatch,
    Trainer,
    batch_tensors,
    build_trainer,
    image_transform,
    prepare,
    run_schedule,
    training_loader,
)


@dataclass
class ThroughputResult:
    amp: str
    compile: str
    pipeline_images_per_s: float
    tensors_images_per_s: float

    @property
    def ratio(self) -> float:
        return self.pipeline_images_per_s / self.tensors_images_per_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: Config, steps: int, warmup: int) -> ThroughputResult:
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    trainer: Trainer = build_trainer(parts)
    trainer.model.train()
    device = parts.device
    needed = steps + warmup
    scheduled = list(itertools.islice(run_schedule(parts.sampler, epochs=needed)(), needed))
    train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
    labels_all = torch.from_numpy(parts.index.labels)
    attributes = None if parts.index.attributes is None else torch.from_numpy(parts.index.attributes.astype(np.float32))

    def run_step(i: int, loaded: LoadedBatch) -> None:
        trainer.step(*batch_tensors(loaded, labels_all, attributes, device), where=f"bench step {i}")

    # 1. The real pipeline: exactly the training run's loader.
    images_seen = 0
    start = 0.0
    for i, loaded in enumerate(training_loader(cfg, train_set, lambda: iter(scheduled), device)):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        run_step(i, loaded)
        if i >= warmup:
            images_seen += len(loaded.dataset_idx)
    _sync(device)
    pipeline = images_seen / (time.perf_counter() - start)

    # 2. The same steps on pre-loaded device tensors (decode and copy excluded).
    first = scheduled[:8]
    preloaded = [
        loaded._replace(images=loaded.images.to(device))
        for loaded in training_loader(cfg, train_set, lambda: iter(first), device)
    ]
    images_seen = 0
    for i in range(needed):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        loaded = preloaded[i % len(preloaded)]
        run_step(i, loaded)
        if i >= warmup:
            images_seen += len(loaded.dataset_idx)
    _sync(device)
    tensors = images_seen / (time.perf_counter() - start)
    return ThroughputResult(cfg.train.amp, cfg.train.compile, pipeline, tensors)


def add_bench_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-train", help="training images/s: real input pipeline vs pre-loaded tensors")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--amp", default=None, help="comma list of train.amp settings to compare, e.g. off,bf16 (CUDA)")
    p.add_argument(
        "--compile",
        default=None,
        help="comma list of train.compile settings to compare, e.g. off,default (compilation happens in --warmup)",
    )
    p.set_defaults(func=cmd_bench_train)


def cmd_bench_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    amps = args.amp.split(",") if args.amp else [cfg.train.amp]
    compiles = args.compile.split(",") if args.compile else [cfg.train.compile]
    rows = []
    for amp, compile_mode in itertools.product(amps, compiles):
        result = measure(apply_overrides(cfg, [f"train.amp={amp}", f"train.compile={compile_mode}"]), args.steps, args.warmup)
        rows.append(
            [amp, compile_mode, f"{result.pipeline_images_per_s:.1f}", f"{result.tensors_images_per_s:.1f}", f"{result.ratio:.2f}"]
        )
    device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
    print(
        f"bench-train on {device}: {cfg.model.backbone} at {cfg.data.image_size} px, {cfg.sampler.name}, "
        f"num_workers={cfg.train.num_workers}, {args.steps} timed steps"
    )
    print(tabulate(rows, headers=["amp", "compile", "pipeline img/s", "pre-loaded img/s", "ratio"], tablefmt="github"))
    return 0
