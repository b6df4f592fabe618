"""Per-query Recall@1 hits: which queries found a relevant item first, saved next to metrics.json.

`compare` reads them to count the query sample's noise (a mean over 1,000 queries still moves by a
point or more when the queries are redrawn) and to pair the two sides query by query. A query is kept
exactly when `retrieval_metrics` scores it (it has at least one relevant item in the gallery), and the
nearest neighbour is the same (cosine, ties to the lower index), so the hits' mean is the table's recall@1.

>>> feats = {"emb": torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.1, 0.9]])}
>>> out = query_hits(feats, np.array([0, 0, 1, 0]), np.array(["query", "gallery", "query", "gallery"]),
...                  "query-gallery", np.array([10, 11, 12, 13]))
>>> out["emb"].tolist(), out["positions"].tolist()   # query 12 (class 1) has no match in the gallery
([1], [10])
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dmlbench import rundir
from dmlbench.evaluate.knn import knn, l2_normalize
from dmlbench.evaluate.metrics import count_relevant


def query_hits(
    features: Mapping[str, torch.Tensor],
    labels: np.ndarray,
    splits: np.ndarray,
    protocol: str,
    positions: np.ndarray,
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """{"positions": dataset index of each scored query, <layer>: uint8 hit (R@1) per query}."""
    labels, splits, positions = np.asarray(labels), np.asarray(splits), np.asarray(positions)
    if protocol == "query-gallery":
        q_rows, g_rows = np.flatnonzero(splits == "query"), np.flatnonzero(splits == "gallery")
    else:
        q_rows = g_rows = np.arange(len(labels))
    loo = protocol != "query-gallery"
    relevant = count_relevant(labels[q_rows], labels[g_rows], loo) > 0
    scored = q_rows[relevant]
    out: dict[str, np.ndarray] = {"positions": positions[scored].astype(np.int64)}
    for layer, feats in features.items():
        feats = l2_normalize(feats.float())
        query = feats[torch.as_tensor(q_rows)]
        gallery = None if loo else feats[torch.as_tensor(g_rows)]
        nearest = knn(query, gallery, 1, backend=backend).numpy()[:, 0]
        hit = labels[g_rows][nearest] == labels[q_rows]
        out[layer] = hit[relevant].astype(np.uint8)
    return out


def save_query_hits(run_dir: Path, hits: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **hits)
    rundir.atomic_write_bytes(Path(run_dir) / rundir.QUERY_HITS, buffer.getvalue())


def load_query_hits(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The run's hits, or None when the run predates them (or the file is unreadable)."""
    path = Path(run_dir) / rundir.QUERY_HITS
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError):
        return None
