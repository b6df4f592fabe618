"""A finished run's results recomputed from its folder alone, independently of the code that wrote them.

`rebuilt_features` loads config.yaml and model.pt and extracts every evaluation image's features one
image at a time in a plain loop (no DataLoader), each kept with the dataset position it came from;
`score` and `hits` then evaluate them the way metrics.json and query_hits.npz must have been.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dmlbench.config import Config, config_from_dict, load_yaml
from dmlbench.data import DatasetIndex
from dmlbench.evaluate import evaluate_layers
from dmlbench.evaluate.hits import query_hits


@dataclass
class Rebuilt:
    cfg: Config
    index: DatasetIndex
    positions: np.ndarray  # dataset position of each feature row
    features: dict[str, torch.Tensor]


def run_config(run_dir: Path) -> Config:
    return config_from_dict(load_yaml((Path(run_dir) / "config.yaml").read_text()))


def rebuilt_features(run_dir: Path) -> Rebuilt:
    """Every evaluation image's features under the run's model.pt (the full tier keeps its weights)."""
    from dmlbench.data.dataset import ImageDataset
    from dmlbench.model import EmbeddingNet
    from dmlbench.train import image_transform, prepare

    cfg = run_config(run_dir)
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    index = parts.index
    model = EmbeddingNet(
        cfg.model.backbone, fc_dim=cfg.model.fc_dim, emb_dim=cfg.model.emb_dim, num_attributes=index.num_attributes
    )
    model.load_state_dict(torch.load(Path(run_dir) / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    dataset = ImageDataset(index, parts.eval_positions, image_transform(cfg, train=False))
    feats: dict[str, list[torch.Tensor]] = {layer: [] for layer in cfg.eval.layers}
    positions: list[int] = []
    size = cfg.eval.batch_size  # the run's batch size: CPU kernels round per batch shape
    with torch.no_grad():
        for start in range(0, len(dataset), size):
            items = [dataset[i] for i in range(start, min(start + size, len(dataset)))]
            out = model(torch.stack([image for image, _ in items]))
            positions += [int(pos) for _, pos in items]
            for layer in feats:
                feats[layer].append(out[layer].float())
    return Rebuilt(cfg, index, np.asarray(positions), {layer: torch.cat(chunks) for layer, chunks in feats.items()})


def score(
    rebuilt: Rebuilt, features: dict[str, torch.Tensor] | None = None, *, galleries: bool = True
) -> dict[str, dict[str, float | int]]:
    """metrics.json's "layers" from the rebuilt features (or `features`, rows in `rebuilt.positions` order);
    `galleries=False` scores every query against one gallery for all (what a run must not do when the
    dataset has several)."""
    index, pos = rebuilt.index, rebuilt.positions
    return evaluate_layers(
        rebuilt.features if features is None else features,
        index.labels[pos],
        index.splits[pos],
        index.protocol,
        rebuilt.cfg.eval.ks or list(index.ks),
        attributes=None if index.attributes is None else index.attributes[pos],
        backend="torch",
        galleries=index.galleries[pos] if galleries and index.galleries is not None else None,
    )


def hits(rebuilt: Rebuilt, features: dict[str, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """query_hits.npz's arrays from the rebuilt features (each query searched in its own gallery)."""
    index, pos = rebuilt.index, rebuilt.positions
    galleries = None if index.galleries is None else index.galleries[pos]
    feats = rebuilt.features if features is None else features
    return query_hits(feats, index.labels[pos], index.splits[pos], index.protocol, pos, "torch", galleries=galleries)
