"""One run: config -> (dataset, sampler, model, loss) -> train -> per-layer features -> metrics -> run folder.

`prepare` checks everything that can be checked before work starts (names, parameters, loss x sampler
x dataset compatibility, weights on disk, readable images); `train_run` then trains with a checkpoint
after every epoch and resumes from it automatically, so a killed or preempted run continues where it
stopped and reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dmlbench import losses, rundir, samplers
from dmlbench.config import Config, ConfigError, config_from_dict, dump_config, load_yaml, run_id
from dmlbench.data import DATASETS, DatasetIndex
from dmlbench.data.images import ImageDataset, build_transform, check_images_or_raise
from dmlbench.evaluate import evaluate_layers
from dmlbench.model import BACKBONES, EmbeddingNet, check_weights
from dmlbench.registry import import_plugins
from dmlbench.validation.compat import compatibility_error

EMBEDDING_SAMPLE = "embeddings_sample.npz"
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
EMBEDDING_SAMPLE_SIZE = 2000


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf: the run stops instead of writing garbage."""


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def check_names(cfg: Config) -> None:
    """Registry names and their parameters; typos fail here, naming the closest valid name."""
    import_plugins(cfg.plugins)
    try:
        losses.LOSSES.check_params(cfg.loss.name, cfg.loss.params)
        samplers.SAMPLERS.check_params(cfg.sampler.name, cfg.sampler.params)
        DATASETS.check_params(cfg.data.dataset, cfg.data.options)
        BACKBONES.get(cfg.model.backbone)
    except (KeyError, ValueError) as err:
        raise ConfigError(str(err).strip('"')) from None
    if cfg.train.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"train.optimizer must be adam, adamw or sgd, not '{cfg.train.optimizer}'")
    if cfg.train.lr_schedule not in ("none", "cosine", "step"):
        raise ConfigError(f"train.lr_schedule must be none, cosine or step, not '{cfg.train.lr_schedule}'")
    if cfg.train.amp not in ("auto", "bf16", "fp16", "off"):
        raise ConfigError(f"train.amp must be auto, bf16, fp16 or off, not '{cfg.train.amp}'")
    if cfg.train.compile not in COMPILE_MODES:
        raise ConfigError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, not '{cfg.train.compile}'")
    bad_layers = set(cfg.eval.layers) - {"emb", "fc", "conv"}
    if bad_layers:
        raise ConfigError(f"eval.layers may only hold emb, fc, conv; got {sorted(bad_layers)}")


def check_compiler(cfg: Config, device: torch.device) -> None:
    """torch.compile on CPU generates C++: fail before training when no compiler is there to build it."""
    if cfg.train.compile == "off" or device.type != "cpu":
        return
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
        raise ConfigError(
            "train.compile on CPU needs a C++ compiler (g++ or clang++, or $CXX) and none was found: "
            "install one (Debian: apt install g++) or set train.compile=off"
        )


def image_transform(cfg: Config, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The run's train or eval transform, normalised as its backbone's pretrained weights expect."""
    return build_transform(cfg.data.image_size, train, BACKBONES.get(cfg.model.backbone).input_normalization)


def load_index(cfg: Config) -> DatasetIndex:
    loader = DATASETS.get(cfg.data.dataset)
    return loader(cfg.data.root, val_classes=cfg.data.val_classes, subset=cfg.data.subset, seed=cfg.seed, **cfg.data.options)


def preflight(cfg: Config) -> torch.device:
    """The checks that need no data: names, parameters, weights on disk, device, compiler. Returns the device."""
    check_names(cfg)
    check_weights(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights_path)
    device = resolve_device(cfg.train.device)
    check_compiler(cfg, device)
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            "train.amp=fp16 needs a CUDA device (its gradient scaler runs on CUDA); on CPU use train.amp=bf16 or off"
        )
    return device


def prepare(
    cfg: Config, log: Callable[[str], None] = print, check_images: bool = True, device: torch.device | None = None
) -> RunParts:
    """Build and check everything a run needs, before any training happens (`device`: preflight done)."""
    device = device or preflight(cfg)
    index = load_index(cfg)
    sampler_cls = samplers.SAMPLERS.get(cfg.sampler.name)
    problem = compatibility_error(cfg.loss.name, sampler_cls.layout, index.num_attributes, cfg.loss.params)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: Config, params: list[dict[str, Any]]) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    epochs = max(cfg.train.epochs, 1)
    if cfg.train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.train.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs * 2 / 3)), gamma=0.1)
    return None


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: `auto` is bf16 on CUDA and off elsewhere; an explicit bf16 also runs on CPU."""
    amp = cfg.train.amp
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast_context(cfg: Config, device: torch.device) -> Any:
    dtype = amp_dtype(cfg, device)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def extract_features(
    model: EmbeddingNet, parts: RunParts, positions: np.ndarray, layers: list[str], progress: bool, desc: str
) -> dict[str, torch.Tensor]:
    """One pass over `positions`, keeping every requested layer (Emb / FC / Conv)."""
    cfg = parts.cfg
    dataset = ImageDataset(parts.index, positions, image_transform(cfg, train=False))
    loader = DataLoader(
        dataset,
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        num_workers=cfg.train.num_workers,
        pin_memory=parts.device.type == "cuda",
    )
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for images, _pos in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = images.to(parts.device, non_blocking=True)
        with autocast_context(cfg, parts.device):
            out = model(images)
        for layer in layers:
            chunks[layer].append(out[layer].float().cpu())
    return {layer: torch.cat(chunks[layer]) for layer in layers}


def evaluate_positions(
    model: EmbeddingNet, parts: RunParts, positions: np.ndarray, progress: bool, desc: str, protocol: str | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    cfg = parts.cfg
    index = parts.index
    ks = cfg.eval.ks or list(index.ks)
    feats = extract_features(model, parts, positions, cfg.eval.layers, progress, desc)
    attrs = None if index.attributes is None else index.attributes[positions]
    metrics = evaluate_layers(
        feats,
        index.labels[positions],
        index.splits[positions],
        protocol or index.protocol,
        ks,
        attributes=attrs,
        backend=cfg.eval.backend,
    )
    return metrics, feats


@dataclass
class Trainer:
    """The model, loss and optimizer of one run, and the training step they share with `bench-train`."""

    cfg: Config
    device: torch.device
    model: EmbeddingNet
    loss_fn: losses.MetricLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    params: list[torch.Tensor]

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        tuples: torch.Tensor | None,
        attr_targets: torch.Tensor | None,
        where: str = "",
    ) -> tuple[float, float]:
        """One optimisation step; returns (loss, gradient norm). NaN/inf stops the run before the update."""
        cfg = self.cfg
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(cfg, self.device):
            out = self.model(images)
        attr_logits = None if out["attr"] is None else out["attr"].float()
        loss = self.loss_fn(out["emb"].float(), labels, tuples=tuples, attr_logits=attr_logits, attr_targets=attr_targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at {where} ({cfg.loss.name}); the model was not updated and nothing was "
                "written for this epoch. Lower train.lr, set train.grad_clip, or check the loss parameters; "
                "a restarted run resumes from its last checkpoint."
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip or float("inf"))
        if not torch.isfinite(grad_norm):
            if self.scaler is not None:  # fp16 overflow: the scaler skips this step and lowers its scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
                return float(loss.item()), float("nan")
            raise NonFiniteLossError(
                f"gradient norm is {grad_norm.item()} at {where} ({cfg.loss.name}); the model was not updated. "
                "Lower train.lr or set train.grad_clip."
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return float(loss.item()), float(grad_norm)


def augmentation_seeds(seed: int, epoch: int, step: int, count: int) -> list[int]:
    """One seed per image of a batch, from (run seed, epoch, step) alone.

    Random crops and flips are drawn from these, so they do not depend on `train.num_workers` or on
    where a killed run resumed.

    >>> augmentation_seeds(0, 1, 2, 3) == augmentation_seeds(0, 1, 2, 3) != augmentation_seeds(0, 1, 3, 3)
    True
    """
    return [int(s) for s in np.random.SeedSequence([seed, epoch, step]).generate_state(count, dtype=np.uint64)]


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


Schedule = Callable[[], Iterator[tuple[int, int, samplers.Batch]]]  # () -> (epoch, step, batch) in training order


def run_schedule(sampler: samplers.BatchSampler, epochs: int, first_epoch: int = 0, first_step: int = 0) -> Schedule:
    """Every remaining (epoch, step, batch) of a run, from `first_step` of `first_epoch` on."""

    def schedule() -> Iterator[tuple[int, int, samplers.Batch]]:
        for epoch in range(first_epoch, epochs):
            start = first_step if epoch == first_epoch else 0
            for step, batch in enumerate(sampler.iter_epoch(epoch, start=start), start=start):
                yield epoch, step, batch

    return schedule


class SeededBatchKeys:
    """The DataLoader's batch_sampler: each scheduled batch as (image, augmentation seed) keys for SeededViews."""

    def __init__(self, schedule: Schedule, seed: int) -> None:
        self.schedule = schedule
        self.seed = seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch, step, batch in self.schedule():
            seeds = augmentation_seeds(self.seed, epoch, step, len(batch.indices))
            yield list(zip(batch.indices.tolist(), seeds, strict=True))


def training_loader(cfg: Config, train_set: ImageDataset, schedule: Schedule, device: torch.device) -> DataLoader:
    """One DataLoader for the rest of the run: workers start once and prefetch across epoch boundaries
    (while the epoch's checkpoint is written) instead of being respawned every epoch."""
    return DataLoader(
        SeededViews(train_set),
        batch_sampler=SeededBatchKeys(schedule, cfg.seed),
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # workers' base seed; keeps the global RNG untouched
    )


def batch_tensors(
    batch: samplers.Batch,
    images: torch.Tensor,
    dataset_idx: torch.Tensor,
    labels_all: torch.Tensor,
    attributes: torch.Tensor | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(images, labels, tuples, attribute targets) of one loaded batch, on `device`."""
    labels = labels_all[dataset_idx].to(device, non_blocking=True)
    tuples = None if batch.tuples is None else torch.from_numpy(batch.tuples).to(device)
    attr_targets = None if attributes is None else attributes[dataset_idx].to(device, non_blocking=True)
    return images.to(device, non_blocking=True), labels, tuples, attr_targets


def build_trainer(parts: RunParts) -> Trainer:
    cfg, device = parts.cfg, parts.device
    # Process-wide switches, set both ways: an inline sweep runs several configs in one process.
    # Deterministic: bit-exact reruns and resumes. Not: cuDNN benchmarks and picks the fastest kernels.
    if cfg.train.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS needs it
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    seed_everything(cfg.seed)
    model = EmbeddingNet(
        cfg.model.backbone,
        fc_dim=cfg.model.fc_dim,
        emb_dim=cfg.model.emb_dim,
        num_attributes=parts.index.num_attributes,
        pretrained=cfg.model.pretrained,
        weights_path=cfg.model.weights_path,
        freeze_bn=cfg.model.freeze_bn,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.compile != "off":
        # In place: the forward is compiled, parameter names (state_dict, checkpoints) stay unchanged.
        model.compile(mode=None if cfg.train.compile == "default" else cfg.train.compile)
    loss_fn = losses.build(cfg.loss.name, **cfg.loss.params).to(device)
    model.train()  # applies model.freeze_bn, so frozen BatchNorm parameters stay out of the optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    param_groups: list[dict[str, Any]] = [{"params": params}]
    if loss_fn.has_parameters:
        param_groups.append({"params": list(loss_fn.parameters())})
        params = params + list(loss_fn.parameters())
    optimizer = build_optimizer(cfg, param_groups)
    scheduler = build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and cfg.train.amp == "fp16" else None
    return Trainer(cfg, device, model, loss_fn, optimizer, scheduler, scaler, params)


def save_checkpoint(
    run_dir: Path,
    trainer: Trainer,
    sampler: samplers.BatchSampler,
    *,
    epoch: int,
    step: int = 0,
    epoch_progress: dict[str, Any] | None = None,
) -> None:
    state = {
        "epoch": epoch,  # number of completed epochs
        "step": step,  # completed steps of the next epoch (mid-epoch checkpoints), 0 at an epoch's end
        "epoch_progress": epoch_progress,  # that partial epoch's losses, stats and time so far
        "model": trainer.model.state_dict(),
        "loss": trainer.loss_fn.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
        "sampler": sampler.state_dict(),
        "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    rundir.atomic_write_bytes(run_dir / rundir.CHECKPOINT, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / rundir.CHECKPOINT
    if not path.is_file():
        return None
    # Our own file (written atomically by save_checkpoint); it holds RNG states, hence weights_only=False.
    return torch.load(path, map_location="cpu", weights_only=False)


def restore_checkpoint(checkpoint: dict[str, Any], trainer: Trainer, sampler: samplers.BatchSampler) -> None:
    """The inverse of `save_checkpoint`: model, loss, optimizer, scheduler, scaler, sampler and RNG state."""
    trainer.model.load_state_dict(checkpoint["model"])
    trainer.loss_fn.load_state_dict(checkpoint["loss"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    if trainer.scheduler is not None and checkpoint["scheduler"] is not None:
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
    if trainer.scaler is not None and checkpoint["scaler"] is not None:
        trainer.scaler.load_state_dict(checkpoint["scaler"])
    sampler.load_state_dict(checkpoint["sampler"])
    restore_rng(checkpoint["rng"])


def restore_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def write_config(run_dir: Path, cfg: Config) -> None:
    """Write config.yaml, or check that an existing one describes the same run."""
    path = run_dir / rundir.CONFIG
    if path.is_file():
        existing = config_from_dict(load_yaml(path.read_text()))
        if run_id(existing) != run_id(cfg):
            raise ConfigError(
                f"{run_dir} already holds a different run (run_id {run_id(existing)} != {run_id(cfg)}); "
                "choose another output_dir or remove that folder"
            )
        return
    rundir.atomic_write_text(path, dump_config(cfg))


def save_embedding_sample(run_dir: Path, parts: RunParts, feats: dict[str, torch.Tensor], positions: np.ndarray) -> None:
    """A fixed random sample of Emb features for the embedding plots (PCA / t-SNE) of any run."""
    if "emb" not in feats:
        return
    rng = np.random.default_rng(parts.cfg.seed)
    take = np.sort(rng.permutation(len(positions))[:EMBEDDING_SAMPLE_SIZE])
    arrays: dict[str, np.ndarray] = {
        "emb": torch.nn.functional.normalize(feats["emb"][take], dim=1).numpy().astype(np.float32),
        "labels": parts.index.labels[positions[take]],
    }
    if parts.index.attributes is not None:
        arrays["attributes"] = parts.index.attributes[positions[take]].astype(np.float32)
        arrays["attribute_names"] = np.asarray(parts.index.attribute_names or [], dtype=str)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    rundir.atomic_write_bytes(run_dir / EMBEDDING_SAMPLE, buffer.getvalue())


def _mean_stats(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in rows for k in r}
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in rows if k in r and r[k] is not None and math.isfinite(r[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def train_run(cfg: Config, run_dir: Path | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one run into `run_dir` (default `<output_dir>/<run_id>`); return metrics.json's dict.

    A finished folder (DONE) is returned as is and never written to. A folder with a checkpoint resumes
    after its last completed epoch.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.output_dir) / run_id(cfg)
    if rundir.is_done(run_dir):
        return rundir.read_json(run_dir / rundir.METRICS)
    # Typos, missing weights or a missing compiler fail before the run folder even exists.
    device = preflight(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)

    def log(line: str) -> None:
        rundir.append_log(run_dir, line)
        if progress:
            tqdm.write(line)

    parts = prepare(cfg, log=log, device=device)
    for note in parts.notes:
        log(f"note: {note}")
    trainer = build_trainer(parts)
    model = trainer.model

    start_epoch, start_step = 0, 0
    resumed_progress: dict[str, Any] | None = None  # the partial epoch of a mid-epoch checkpoint
    history = rundir.read_history(run_dir)
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is not None:
        restore_checkpoint(checkpoint, trainer, parts.sampler)
        start_epoch, start_step = int(checkpoint["epoch"]), int(checkpoint.get("step", 0))
        if start_step:
            resumed_progress = checkpoint["epoch_progress"]
        log(f"resuming {run_dir.name} after epoch {start_epoch}" + (f", step {start_step}" if start_step else ""))
    # Epochs after the checkpoint were lost with the killed process: drop their history rows.
    history = [row for row in history if row.get("epoch", 0) <= start_epoch]
    rundir.write_history(run_dir, history)

    train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
    attributes = None if parts.index.attributes is None else torch.from_numpy(parts.index.attributes.astype(np.float32))
    labels_all = torch.from_numpy(parts.index.labels)
    every_batches = cfg.train.checkpoint_every_batches or 0
    loader = iter(training_loader(cfg, train_set, run_schedule(parts.sampler, cfg.train.epochs, start_epoch, start_step), device))

    for epoch in range(start_epoch, cfg.train.epochs):
        first_step = start_step if epoch == start_epoch else 0
        partial = resumed_progress if first_step else {"losses": [], "stats": [], "time_s": 0.0}
        if first_step == 0:
            # Whatever else draws from the global RNG (none of our losses do) replays from (seed, epoch);
            # a resumed partial epoch continues from the RNG state saved in its checkpoint instead.
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        batches = list(parts.sampler.iter_epoch(epoch))  # the same batches the loader is loading: for tuples
        model.train()
        started = time.time() - partial["time_s"]
        losses_seen: list[float] = partial["losses"]
        stats_rows: list[dict[str, float]] = partial["stats"]
        bar = tqdm(
            total=len(batches), initial=first_step, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress, leave=False
        )
        for step in range(first_step, len(batches)):
            images, dataset_idx = next(loader)
            loss, grad_norm = trainer.step(
                *batch_tensors(batches[step], images, dataset_idx, labels_all, attributes, device),
                where=f"epoch {epoch + 1}, step {step + 1}",
            )
            losses_seen.append(loss)
            stats_rows.append({**trainer.loss_fn.last_stats, "grad_norm": grad_norm})
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses_seen):.4f}")
            if every_batches and (step + 1) % every_batches == 0 and step + 1 < len(batches):
                progress_so_far = {"losses": losses_seen, "stats": stats_rows, "time_s": time.time() - started}
                save_checkpoint(run_dir, trainer, parts.sampler, epoch=epoch, step=step + 1, epoch_progress=progress_so_far)
        bar.close()
        if trainer.scheduler is not None:
            trainer.scheduler.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses_seen)) if losses_seen else None,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "time_s": round(time.time() - started, 3),
            "batches": len(batches),
            "stats": _mean_stats(stats_rows),
            "sampler": parts.sampler.epoch_stats(epoch),
        }
        every = cfg.eval.every_epochs
        if every and len(parts.val_positions) and ((epoch + 1) % every == 0 or epoch + 1 == cfg.train.epochs):
            val_metrics, _ = evaluate_positions(model, parts, parts.val_positions, progress, "validation", "leave-one-out")
            row["val"] = val_metrics.get("emb", next(iter(val_metrics.values())))
        history.append(row)
        # History first: a kill between the two writes leaves an extra row that resume drops.
        rundir.write_history(run_dir, history)
        save_checkpoint(run_dir, trainer, parts.sampler, epoch=epoch + 1)
        log(f"epoch {epoch + 1}/{cfg.train.epochs} loss {row['loss']:.4f} ({row['time_s']:.1f} s)")

    del loader  # shuts its worker processes down before evaluation starts its own
    metrics, feats = evaluate_positions(model, parts, parts.eval_positions, progress, "test features")
    result = {
        "run_id": run_id(cfg),
        "dataset": parts.index.name,
        "protocol": parts.index.protocol,
        "epoch": cfg.train.epochs,
        "ks": list(cfg.eval.ks or parts.index.ks),
        "notes": parts.notes,
        "layers": metrics,
    }
    save_embedding_sample(run_dir, parts, feats, parts.eval_positions)
    rundir.atomic_write_json(run_dir / rundir.METRICS, result)
    rundir.mark_done(run_dir, {"run_id": result["run_id"]})
    log(f"done: {run_dir}")
    return result
