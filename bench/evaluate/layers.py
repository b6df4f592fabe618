"""Score every layer's features of one extraction pass under an evaluation protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from dmlbench.config.schema import PROTOCOLS
from dmlbench.evaluate.metrics import per_query_metrics, retrieval_metrics, summarize


def evaluate_layers(
    features: Mapping[str, torch.Tensor],
    labels: np.ndarray,
    splits: np.ndarray,
    protocol: str,
    ks: Sequence[int],
    attributes: np.ndarray | None = None,
    backend: str = "auto",
    galleries: np.ndarray | None = None,
) -> dict[str, dict[str, float | int]]:
    """Score every layer's features (Emb / FC / Conv from one extraction pass) under a protocol.

    ``features[layer]``: (N, D) rows in the order of ``labels``/``splits``. "query-gallery" ranks
    the rows whose split is "query" against those whose split is "gallery" (other rows unused);
    "leave-one-out" uses every row as query and gallery. Features are L2-normalised here.
    ``galleries`` (query-gallery only; see `DatasetIndex.galleries`): a group id per row; each query is
    ranked against the gallery rows of its own group, and every metric is the mean over all queries.

    >>> feats = {"emb": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.9, 0.0]])}
    >>> labels, splits = np.array([0, 0, 1, 1]), np.array(["query", "gallery", "query", "gallery"])
    >>> evaluate_layers(feats, labels, splits, "query-gallery", ks=(1,), backend="torch")["emb"]["recall@1"]
    0.5
    >>> evaluate_layers(feats, labels, splits, "query-gallery", ks=(1,), backend="torch",
    ...                 galleries=np.array([0, 0, 1, 1]))["emb"]["recall@1"]   # 1.0 is in another group
    1.0

    >>> feats = {"emb": torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.1, 0.9]])}
    >>> out = evaluate_layers(feats, np.array([0, 0, 1, 1]), np.array(["query", "gallery", "query", "gallery"]),
    ...                       "query-gallery", ks=(1,), backend="torch")
    >>> out["emb"]["recall@1"], out["emb"]["num_queries"]
    (1.0, 2)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    if protocol == "query-gallery":
        q_rows, g_rows = np.flatnonzero(splits == "query"), np.flatnonzero(splits == "gallery")
        if not len(q_rows) or not len(g_rows):
            raise ValueError(f"query-gallery protocol needs 'query' and 'gallery' rows, got {len(q_rows)} and {len(g_rows)}")
    results: dict[str, dict[str, float | int]] = {}
    for layer, feats in features.items():
        if len(feats) != len(labels):
            raise ValueError(f"layer {layer!r}: {len(feats)} feature rows for {len(labels)} labels")
        if protocol == "leave-one-out":
            results[layer] = retrieval_metrics(feats, labels, ks=ks, query_attrs=attributes, backend=backend)
        elif galleries is not None:
            results[layer] = _grouped(feats, labels, splits, np.asarray(galleries), ks, attributes, backend)
        else:
            q_idx, g_idx = torch.as_tensor(q_rows), torch.as_tensor(g_rows)
            results[layer] = retrieval_metrics(
                feats[q_idx.to(feats.device)],
                labels[q_rows],
                feats[g_idx.to(feats.device)],
                labels[g_rows],
                ks=ks,
                query_attrs=None if attributes is None else attributes[q_rows],
                gallery_attrs=None if attributes is None else attributes[g_rows],
                backend=backend,
            )
    return results


def _grouped(
    feats: torch.Tensor,
    labels: np.ndarray,
    splits: np.ndarray,
    galleries: np.ndarray,
    ks: Sequence[int],
    attributes: np.ndarray | None,
    backend: str,
) -> dict[str, float | int]:
    """Query-gallery metrics with one gallery per group, averaged over every query of every group."""
    parts: list[dict[str, np.ndarray]] = []
    total = 0
    for q_rows, g_rows in query_gallery_tasks(splits, galleries):
        total += len(q_rows)
        if not len(g_rows):  # its queries have nothing to find: not scored, as a query without a match
            continue
        q_idx, g_idx = torch.as_tensor(q_rows).to(feats.device), torch.as_tensor(g_rows).to(feats.device)
        per_query, _ = per_query_metrics(
            feats[q_idx], labels[q_rows], feats[g_idx], labels[g_rows], ks=ks,
            query_attrs=None if attributes is None else attributes[q_rows],
            gallery_attrs=None if attributes is None else attributes[g_rows], backend=backend,
        )  # fmt: skip
        parts.append(per_query)
    if not parts:
        raise ValueError("no group has both query and gallery rows")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return summarize(joined, total)


def query_gallery_tasks(splits: np.ndarray, galleries: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(query rows, gallery rows) of each retrieval task: one per gallery group, or one for all rows.

    >>> [(q.tolist(), g.tolist()) for q, g in query_gallery_tasks(np.array(["query", "gallery", "query", "gallery"]),
    ...                                                           np.array([0, 0, 1, 1]))]
    [([0], [1]), ([2], [3])]
    """
    splits = np.asarray(splits)
    group = np.zeros(len(splits), np.int64) if galleries is None else np.asarray(galleries)
    return [
        (np.flatnonzero((splits == "query") & (group == g)), np.flatnonzero((splits == "gallery") & (group == g)))
        for g in np.unique(group[splits == "query"])
    ]
