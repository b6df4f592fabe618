"""The fast tier (`train.tier: head`): a frozen ImageNet backbone, only the FC/Emb head trained by the loss.

What it isolates. A loss idea's effect on how a head arranges fixed, good features: many seeds in
seconds, with a seed spread a fraction of full training's. What it does not say: how the loss shapes a
backbone trained end to end (feature learning, BatchNorm statistics, augmentation); a fast-tier verdict
is a screening result, to be confirmed on the full tier for a claim about full training.

How. The backbone (`model.backbone`, its ImageNet weights required) turns every image of the dataset into
its pooled Conv feature once, with the evaluation transform (resize + centre crop at `data.image_size`,
no augmentation); the features are cached on disk under a key hashing everything they depend on
(backbone, weights file, image size, normalisation, every image's path and size), in the `features`
folder of dmlbench's cache (`$DMLBENCH_CACHE_DIR`, default ~/.cache/dmlbench; "off": extracted per run). Each run then trains the head of
`EmbeddingNet` (FC = Linear + ReLU, Emb = Linear, Attr when the dataset has attributes) on the cached
features with the run's sampler, loss, optimizer and schedule, and evaluates Conv (the frozen feature),
FC and Emb exactly as the full tier does. The run folder is the same (config.yaml, history.jsonl,
metrics.json, query_hits.npz, DONE), so collect, compare and sweep read it unchanged. A run takes seconds,
so it keeps no checkpoint: a killed run starts again from scratch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dmlbench import losses, rundir
from dmlbench.config import Config, run_id
from dmlbench.data import DatasetIndex
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.scan_cache import cache_dir
from dmlbench.errors import ConfigError, NonFiniteLossError
from dmlbench.evaluate import evaluate_layers
from dmlbench.evaluate.hits import query_hits, save_query_hits
from dmlbench.model import BACKBONES, EmbeddingNet, weights_location
from dmlbench.rundir.lease import Lease
from dmlbench.train.environment import dataset_facts, features_digest, fingerprint, write_environment
from dmlbench.train.features import save_embedding_sample
from dmlbench.train.parts import RunParts, prepare
from dmlbench.train.pipeline import image_transform
from dmlbench.train.trainer import build_optimizer, build_scheduler, loss_parameter_group, seed_everything

FEATURE_CACHE_VERSION = 1  # bump when the extraction changes what a cached feature holds
FEATURE_CHUNK_IMAGES = 2048  # resumable unit of the extraction (rounded down to whole eval batches)
PROGRESS_EVERY_S = 30.0  # one progress line this often when stderr is not a terminal


def feature_key(cfg: Config, index: DatasetIndex) -> str:
    """Hash of everything the frozen features depend on; image files by relative path and byte size."""
    weights = weights_location(cfg.model.backbone, cfg.model.weights_path)
    sizes = [os.stat(index.root / path).st_size for path in index.paths]
    blob = json.dumps(
        {
            "version": FEATURE_CACHE_VERSION,
            "backbone": cfg.model.backbone,
            "weights": [weights.name, weights.stat().st_size],
            "image_size": cfg.data.image_size,
            "normalization": BACKBONES.get(cfg.model.backbone).input_normalization,
            "crop": index.bboxes is not None,
            "paths": [str(p) for p in index.paths],
            "sizes": sizes,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def feature_cache_path(cfg: Config, index: DatasetIndex) -> Path | None:
    """Where the frozen features of `index` are cached (None: the cache is off)."""
    root = cache_dir()
    return None if root is None else root / "features" / f"{feature_key(cfg, index)}.npy"


@torch.no_grad()
def cached_features(
    cfg: Config, index: DatasetIndex, device: torch.device, log: Callable[[str], None] = print
) -> torch.Tensor:
    """(N, D) frozen pooled features of every image of `index`, from the cache or extracted and cached."""
    if not (cfg.model.pretrained or cfg.model.weights_path):
        raise ConfigError(
            "train.tier=head trains only the head on a frozen backbone, which needs ImageNet weights: "
            "set model.pretrained=true (efficientnet_lite0's ship in a pip package) or model.weights_path"
        )
    path = feature_cache_path(cfg, index)
    if path is not None and path.is_file():
        return torch.from_numpy(np.load(path))
    started = time.time()
    trunk = EmbeddingNet(cfg.model.backbone, pretrained=cfg.model.pretrained, weights_path=cfg.model.weights_path).trunk
    trunk = trunk.to(device).eval()
    total = len(index.paths)
    # Resumable: chunks of whole batches (so every image meets the same batch as in one pass: same bytes)
    chunk = cfg.eval.batch_size * max(1, FEATURE_CHUNK_IMAGES // cfg.eval.batch_size)
    parts_dir = None if path is None else path.with_suffix(".parts")
    log(f"frozen {cfg.model.backbone} features of {total} images: "
        + (f"cache {path} (finished chunks kept in {parts_dir} until done)" if path is not None else "cache off"))
    progress = ExtractionProgress(total, log)
    chunks = []
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        part = None if parts_dir is None else parts_dir / f"{start:09d}-{stop:09d}.npy"
        if part is not None and part.is_file():
            chunks.append(np.load(part))
        else:
            dataset = ImageDataset(index, np.arange(start, stop), image_transform(cfg, train=False))
            loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.train.num_workers)
            batches = []
            for images, _ in loader:
                batches.append(trunk(images.to(device)).float().cpu())
                progress.advance(len(images))
            chunks.append(torch.cat(batches).numpy().astype(np.float32))
            if part is not None:
                rundir.atomic_write_bytes(part, _npy_bytes(chunks[-1]))
        progress.skip_to(stop)
    features = np.concatenate(chunks).astype(np.float32)
    if path is not None and parts_dir is not None:
        rundir.atomic_write_bytes(path, _npy_bytes(features))
        shutil.rmtree(parts_dir, ignore_errors=True)
    log(f"frozen {cfg.model.backbone} features of {len(features)} images extracted in {time.time() - started:.1f} s"
        + (f", cached: {path}" if path is not None else " (cache off)"))
    return torch.from_numpy(features)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class ExtractionProgress:
    """Images done, img/s and ETA: a tqdm bar on a terminal, else one line every ``PROGRESS_EVERY_S``."""

    def __init__(self, total: int, log: Callable[[str], None]) -> None:
        self.total, self.done, self.log = total, 0, log
        self.started = self.last = time.time()
        self.counted = 0  # images extracted here (not loaded from finished chunks): the rate's numerator
        self.bar = tqdm(total=total, unit="img", desc="features", leave=False) if sys.stderr.isatty() else None

    def advance(self, images: int) -> None:
        self.done += images
        self.counted += images
        if self.bar is not None:
            self.bar.update(images)
            return
        now = time.time()
        if now - self.last >= PROGRESS_EVERY_S or self.done >= self.total:
            self.last = now
            rate = self.counted / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log(f"features: {self.done}/{self.total} images, {rate:.0f} img/s, ETA {eta:.0f} s")

    def skip_to(self, done: int) -> None:
        """Account for a finished chunk loaded from disk."""
        if done > self.done and self.bar is not None:
            self.bar.update(done - self.done)
        self.done = max(self.done, done)
        if self.done >= self.total and self.bar is not None:
            self.bar.close()


class Head(nn.Module):
    """EmbeddingNet's head on a precomputed Conv feature: the same FC / Emb / Attr layers and outputs."""

    def __init__(self, feature_dim: int, fc_dim: int, emb_dim: int, num_attributes: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(feature_dim, fc_dim), nn.ReLU(inplace=True))
        self.emb = nn.Linear(fc_dim, emb_dim)
        self.attr = nn.Linear(fc_dim, num_attributes) if num_attributes > 0 else None

    def forward(self, conv: torch.Tensor) -> dict[str, torch.Tensor | None]:
        fc = self.fc(conv)
        return {"conv": conv, "fc": fc, "emb": self.emb(fc), "attr": self.attr(fc) if self.attr is not None else None}


def train_head(parts: RunParts, features: torch.Tensor, head: Head, loss_fn: losses.MetricLoss) -> list[dict[str, Any]]:
    """Train `head` on the cached features of the training images; returns the history rows."""
    cfg, device = parts.cfg, parts.device
    groups: list[dict[str, Any]] = [{"params": list(head.parameters())}]
    loss_group = loss_parameter_group(cfg, loss_fn, parts.notes)  # as the full tier: lr x lr_multiplier
    if loss_group is not None:
        groups.append(loss_group)
    params = [p for group in groups for p in group["params"]]
    optimizer = build_optimizer(cfg, groups)
    scheduler = build_scheduler(cfg, optimizer)
    labels = torch.from_numpy(parts.loss_labels)  # training classes 0..C-1, as the full tier gives the loss
    attributes = None if parts.index.attributes is None else torch.from_numpy(parts.index.attributes.astype(np.float32))
    history = []
    for epoch in range(cfg.train.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # as the full tier: anything else drawing replays
        started, epoch_losses = time.time(), []
        head.train()
        for step, batch in enumerate(parts.sampler.iter_epoch(epoch)):
            rows = torch.from_numpy(parts.train_positions[batch.indices])
            out = head(features[rows].to(device))
            tuples = None if batch.tuples is None else torch.from_numpy(batch.tuples).to(device)
            attr_targets = None if attributes is None else attributes[rows].to(device)
            attr_logits = None if out["attr"] is None else out["attr"]
            assert out["emb"] is not None
            loss = loss_fn(out["emb"], labels[rows].to(device), tuples=tuples, attr_logits=attr_logits, attr_targets=attr_targets)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} ({cfg.loss.name}); "
                    "lower train.lr, set train.grad_clip, or check the loss parameters"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip or float("inf"))
            optimizer.step()
            epoch_losses.append(float(loss.item()))
        if scheduler is not None:
            scheduler.step()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(epoch_losses)) if epoch_losses else None,
                "lr": optimizer.param_groups[0]["lr"],
                "time_s": round(time.time() - started, 3),
                "batches": len(epoch_losses),
                "tier": "head",
            }
        )
    return history


def train_head_run(
    cfg: Config, run_dir: Path, device: torch.device, *, progress: bool = True, lease: Lease | None = None
) -> dict[str, Any]:
    """`train_run` for `train.tier: head` (the caller has checked DONE, run preflight and written config.yaml;
    `lease`, the folder's, is confirmed before each write: a trainer whose lease is lost writes nothing)."""

    def log(line: str) -> None:
        rundir.append_log(run_dir, line)
        if progress:
            print(line)

    parts = prepare(cfg, log=log, check_images=False, device=device)
    features = cached_features(cfg, parts.index, parts.device, log)
    digest = features_digest(features.numpy(), feature_cache_path(cfg, parts.index))
    write_environment(run_dir, fingerprint(parts.device, features=digest), dataset_facts(parts.index))
    # One thread: the head's matrices are small, so more threads only add waiting (8x slower on a busy
    # 2-core machine), and the result no longer depends on the machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_evaluate(cfg, run_dir, parts, features, log, lease.confirm if lease is not None else lambda: None)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(
    cfg: Config, run_dir: Path, parts: RunParts, features: torch.Tensor, log: Callable[[str], None],
    confirm_lease: Callable[[], None],
) -> dict[str, Any]:
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    seed_everything(cfg.seed)
    head = Head(features.shape[1], cfg.model.fc_dim, cfg.model.emb_dim, parts.index.num_attributes).to(parts.device)
    loss_fn = losses.build(cfg.loss.name, parts.loss_harness(), **cfg.loss.params).to(parts.device)
    history = train_head(parts, features, head, loss_fn)
    confirm_lease()
    rundir.write_history(run_dir, history)

    head.eval()
    positions = parts.eval_positions
    with torch.no_grad():
        out = head(features[torch.from_numpy(positions)].to(parts.device))
    feats: dict[str, torch.Tensor] = {}
    for layer in cfg.eval.layers:
        value = out[layer]
        assert value is not None  # emb, fc and conv always exist; only attr may be None
        feats[layer] = value.float().cpu()
    index = parts.index
    metrics = evaluate_layers(
        feats,
        index.labels[positions],
        index.splits[positions],
        index.protocol,
        cfg.eval.ks or list(index.ks),
        attributes=None if index.attributes is None else index.attributes[positions],
        backend=cfg.eval.backend,
        galleries=None if index.galleries is None else index.galleries[positions],
    )
    galleries = None if index.galleries is None else index.galleries[positions]
    hits = query_hits(feats, index.labels[positions], index.splits[positions], index.protocol, positions,
                      cfg.eval.backend, galleries=galleries)  # fmt: skip
    save_query_hits(run_dir, hits)
    result = {
        "run_id": run_id(cfg),
        "dataset": index.name,
        "protocol": index.protocol,
        "epoch": cfg.train.epochs,
        "ks": list(cfg.eval.ks or index.ks),
        "notes": [*parts.notes, f"fast tier: frozen {cfg.model.backbone}, head trained"],
        "layers": metrics,
    }
    confirm_lease()
    save_embedding_sample(run_dir, parts, feats, positions)
    rundir.atomic_write_json(run_dir / rundir.METRICS, result)
    confirm_lease()
    rundir.mark_done(run_dir, {"run_id": result["run_id"]})
    log(f"done: {run_dir}")
    return result
