"""Per-layer features of a trained model (Emb / FC / Conv), their retrieval metrics, and the embedding sample."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dmlbench import rundir
from dmlbench.data.dataset import ImageDataset
from dmlbench.evaluate import evaluate_layers
from dmlbench.model import EmbeddingNet
from dmlbench.train.parts import RunParts
from dmlbench.train.pipeline import image_transform
from dmlbench.train.trainer import autocast_context

EMBEDDING_SAMPLE_SIZE = 2000


@torch.no_grad()
def extract_features(
    model: EmbeddingNet, parts: RunParts, positions: np.ndarray, layers: Sequence[str], progress: bool, desc: str
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
        galleries=None if index.galleries is None else index.galleries[positions],
    )
    return metrics, feats


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
    rundir.atomic_write_npz(run_dir / rundir.EMBEDDINGS_SAMPLE, arrays)

