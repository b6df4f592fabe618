"""Per-query Recall@1 hits: which queries found a relevant item first, saved next to metrics.json.

`compare` reads them to count the query sample's noise (a mean over 1,000 queries still moves by a
point or more when the queries are redrawn) and to pair the two sides query by query. A query is kept
exactly when `retrieval_metrics` scores it (it has at least one relevant item in the gallery), and the
nearest neighbour is the same (cosine, ties to the lower index), so the hits' mean is the table's recall@1.

>>> feats = {"emb": torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.1, 0.9]])}
>>> out = query_hits(feats, np.array([0, 0, 1, 0]), np.array(["query", "gallery", "query", "gallery"]),
...                  "query-gallery", np.array([10, 11, 12, 13]))
>>> out["emb"].tolist(), out["positions"].tolist(), out["classes"].tolist()   # query 12 has no match
([1], [10], [0])
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dmlbench import rundir
from dmlbench.errors import UsageError
from dmlbench.evaluate.knn import knn, l2_normalize
from dmlbench.evaluate.layers import query_gallery_tasks
from dmlbench.evaluate.metrics import count_relevant
from dmlbench.labels import class_ids

# What every run's hits file holds besides one hit vector per layer: which queries (dataset positions)
# and their classes (queries of one class are not independent draws: compare clusters the query noise).
QUERY_KEYS: tuple[str, ...] = ("positions", "classes")


def query_hits(
    features: Mapping[str, torch.Tensor],
    labels: np.ndarray,
    splits: np.ndarray,
    protocol: str,
    positions: np.ndarray,
    backend: str = "auto",
    galleries: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """{"positions": dataset index of each scored query, "classes": its class, <layer>: uint8 hit (R@1)}.

    `galleries` (query-gallery only): a group id per row; a query searches its own group's gallery.
    """
    (labels,) = class_ids(labels)  # the classes metrics compare (exact for float or string labels too)
    splits, positions = np.asarray(splits), np.asarray(positions)
    tasks: list[tuple[np.ndarray, np.ndarray | None]]  # (query rows, gallery rows; None: leave-one-out)
    if protocol != "query-gallery":
        tasks = [(np.arange(len(labels)), None)]  # leave-one-out: every row against the others
    else:
        tasks = list(query_gallery_tasks(splits, galleries))
    normalized = {layer: l2_normalize(feats.float()) for layer, feats in features.items()}
    scored_rows: list[np.ndarray] = []
    hits: dict[str, list[np.ndarray]] = {layer: [] for layer in features}
    for q_rows, g_rows in tasks:
        candidates = q_rows if g_rows is None else g_rows
        relevant = count_relevant(labels[q_rows], labels[candidates], g_rows is None) > 0
        scored_rows.append(q_rows[relevant])
        if not relevant.any():
            continue
        for layer, feats in normalized.items():
            if g_rows is None:  # leave-one-out: every row is searched by all the others
                nearest = knn(feats[torch.as_tensor(q_rows)], None, 1, backend=backend).numpy()[relevant, 0]
                found = labels[q_rows][nearest]
            else:
                query, gallery = feats[torch.as_tensor(q_rows[relevant])], feats[torch.as_tensor(g_rows)]
                found = labels[g_rows][knn(query, gallery, 1, backend=backend).numpy()[:, 0]]
            hits[layer].append((found == labels[q_rows[relevant]]).astype(np.uint8))
    scored = np.concatenate(scored_rows)
    out: dict[str, np.ndarray] = {"positions": positions[scored].astype(np.int64), "classes": labels[scored]}
    for layer, parts in hits.items():
        out[layer] = np.concatenate(parts) if parts else np.empty(0, np.uint8)
    return out


def save_query_hits(run_dir: Path, hits: Mapping[str, np.ndarray]) -> None:
    rundir.atomic_write_npz(Path(run_dir) / rundir.QUERY_HITS, hits)


def load_query_hits(run_dir: Path, strict: bool = False) -> dict[str, np.ndarray] | None:
    """The run's hits, or None when the run predates them. An unreadable or inconsistent file (truncated,
    not an npz, a hit vector whose length is not the queries') is None too, or with `strict` a
    UsageError naming the file (what `compare` needs: never a silently dropped query term)."""
    path = Path(run_dir) / rundir.QUERY_HITS
    if not path.is_file():
        return None
    try:
        return read_hits_file(path)
    except ValueError as err:
        if strict:
            raise UsageError(f"{path}: unreadable query hits ({err}); rerun that run, or delete the file to "
                             "compare on seeds only") from err  # fmt: skip
        return None


def read_hits_file(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz, checked: ValueError when unreadable, or a hit vector is not one per query."""
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from err
    queries = arrays.get("positions")
    if queries is not None:
        bad = [k for k, v in arrays.items() if k not in QUERY_KEYS and v.shape != queries.shape]
        if bad:
            raise ValueError(f"{bad[0]} holds {arrays[bad[0]].shape[0] if arrays[bad[0]].ndim else 0} hits for "
                             f"{len(queries)} queries")  # fmt: skip
    return arrays
