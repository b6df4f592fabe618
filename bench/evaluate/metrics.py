"""Retrieval metrics by their definitions, computed over the kNN of `dmlbench.evaluate.knn`.

Definitions (per query q; G = the gallery, minus q itself in leave-one-out; R = number of gallery
items with q's label; neighbours ranked by cosine similarity, ties -> lower gallery index first):

- ``recall@K``: 1 if at least one of the K nearest is relevant, else 0 (hit rate / CMC@K).
- ``precision@K``: relevant items among the K nearest, divided by K.
- ``r_precision``: relevant items among the R nearest, divided by R (Musgrave et al. 2020).
- ``map@r``: (1/R) * sum_{i<=R} P(i) * rel(i), P(i) = precision among the i nearest (Musgrave et al.).
- ``attr_sim@K`` (only with attributes): graded semantic relevance. Take the K nearest gallery items
  that are *not* of q's class (skipping the relevant ones, so there are always K of them when the
  gallery has that many) and average the cosine similarity of their attribute vectors with q's.
  High values mean "the wrong answers are still semantically close" (SGML Fig. 1 granularity); an
  all-zero attribute vector has cosine 0 with everything.
- K larger than the gallery is clamped to the gallery size (precision@K then divides by the
  clamped K; attr_sim@K uses the non-matching items there are). The key keeps the requested K.
- Queries with R = 0 are excluded from every mean; ``num_queries`` counts the evaluated queries and
  ``excluded_queries`` the excluded ones. With no evaluable query every metric is NaN.
- Leave-one-out (gallery omitted): each query is removed from its own ranking by index, never by
  dropping the first neighbour, so exact duplicates of the query still count as neighbours.
- Labels are compared exactly (integers, floats or strings; `dmlbench.labels.class_ids`).

Per query chunk the kNN keeps only the columns it needs: the largest K or R of the chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dmlbench.evaluate.knn import DEFAULT_CHUNK_BYTES, gpu_of, l2_normalize, make_searcher, resolve_backend
from dmlbench.labels import class_ids

_ATTR_BLOCK_ELEMENTS = 2**24  # bound on (rows x neighbours x attributes) gathered at once

ArrayLike = np.ndarray | torch.Tensor | Sequence[float] | Sequence[int] | Sequence[str]


def count_relevant(query_labels: np.ndarray, gallery_labels: np.ndarray, leave_one_out: bool) -> np.ndarray:
    """R per query: gallery items sharing its label (itself not counted in leave-one-out).

    >>> count_relevant(np.array([0, 1, 2]), np.array([0, 0, 1, 3]), leave_one_out=False).tolist()
    [2, 1, 0]
    >>> count_relevant(np.array([5, 5, 7]), np.array([5, 5, 7]), leave_one_out=True).tolist()
    [1, 1, 0]
    """
    classes, counts = np.unique(gallery_labels, return_counts=True)
    pos = np.clip(np.searchsorted(classes, query_labels), 0, max(len(classes) - 1, 0))
    found = (classes[pos] == query_labels) if len(classes) else np.zeros(len(query_labels), dtype=bool)
    r = np.where(found, counts[pos] if len(classes) else 0, 0).astype(np.int64)
    return r - 1 if leave_one_out else r



def ranking_metrics(
    relevant: torch.Tensor, num_relevant: torch.Tensor, ks: Sequence[int], gallery_size: int
) -> dict[str, torch.Tensor]:
    """Per-query recall@K, precision@K, R-precision and MAP@R from a ranked relevance matrix.

    ``relevant[q, i]``: the (i+1)-th nearest gallery item of q has q's label; it must have at least
    max(min(K, gallery_size), R_q) columns. ``num_relevant``: R_q >= 1. K is clamped to gallery_size.

    Query 0 ranks (neg, pos, pos, neg) with R = 2: R-precision 1/2, MAP@R = (0 + 1/2) / 2.
    Query 1 ranks (pos, neg, neg, neg) with R = 1: everything is 1.

    >>> rel = torch.tensor([[False, True, True, False], [True, False, False, False]])
    >>> m = ranking_metrics(rel, torch.tensor([2, 1]), ks=(1, 2), gallery_size=4)
    >>> {name: v.tolist() for name, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'recall@1': [0.0, 1.0], 'precision@1': [0.0, 1.0], 'recall@2': [1.0, 1.0],
     'precision@2': [0.5, 0.5], 'r_precision': [0.5, 1.0], 'map@r': [0.25, 1.0]}
    """
    # Few, vectorised ops: per-chunk op count (not size) dominates on CPU for these small matrices.
    hits_so_far = relevant.cumsum(dim=1)  # hits among the i nearest
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        k_eff = min(int(k), gallery_size)
        hits = hits_so_far[:, k_eff - 1]
        out[f"recall@{k}"] = (hits > 0).double()
        out[f"precision@{k}"] = hits.double() / k_eff
    r = num_relevant.to(device=relevant.device, dtype=torch.long)
    positions = torch.arange(1, relevant.shape[1] + 1, device=relevant.device, dtype=torch.float64)
    hits_within_r = relevant & (positions[None, :] <= r[:, None])
    out["r_precision"] = hits_so_far.gather(1, (r - 1)[:, None]).squeeze(1).double() / r
    out["map@r"] = ((hits_so_far * hits_within_r) / positions[None, :]).sum(dim=1) / r
    return out


def nonmatching_attr_similarity(
    relevant: torch.Tensor, attr_cosine: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-query attr_sim@K: mean attribute cosine over the K nearest *non-matching* neighbours.

    ``attr_cosine[q, i]``: attribute cosine between q and its (i+1)-th nearest gallery item. A row
    with no non-matching neighbour at all gives NaN (left out of the mean by the caller).

    >>> rel = torch.tensor([[True, False, False, True, False]])
    >>> cos = torch.tensor([[0.9, 0.8, 0.2, 0.7, 0.5]])
    >>> {k: round(v.item(), 4) for k, v in nonmatching_attr_similarity(rel, cos, ks=(1, 2, 3)).items()}
    {'attr_sim@1': 0.8, 'attr_sim@2': 0.5, 'attr_sim@3': 0.5}
    """
    nonmatching = ~relevant
    rank_among_nonmatching = nonmatching.cumsum(dim=1)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        take = nonmatching & (rank_among_nonmatching <= int(k))
        total = (attr_cosine.double() * take).sum(dim=1)
        count = take.sum(dim=1).double()
        out[f"attr_sim@{k}"] = torch.where(count > 0, total / count.clamp(min=1), torch.nan)
    return out



def _as_labels(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_matrix(x: ArrayLike, what: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{what} must be 2-D (N, D), got shape {tuple(t.shape)}")
    t = t.to(dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contain NaN or inf (diverged training?); refusing to score them")
    return t


def retrieval_metrics(
    query_emb: ArrayLike,
    query_labels: ArrayLike,
    gallery_emb: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    ks: Sequence[int] = (1, 10),
    query_attrs: ArrayLike | None = None,
    gallery_attrs: ArrayLike | None = None,
    *,
    backend: str = "auto",
    device: str | torch.device | None = None,
    normalize: bool = True,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, float | int]:
    """Retrieval metrics of the module docstring (cosine similarity; ``normalize=False`` ranks by
    the raw inner product). Gallery omitted = leave-one-out on the query set.

    Hand-computed: the query [1, 0] (class 0) ranks the gallery g0 (class 1, cos 1), g1 (class 0,
    cos 0.8), g2 (class 0, cos 0), g3 (class 1, cos -1); R = 2.

    >>> g = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
    >>> m = retrieval_metrics([[1.0, 0.0]], [0], g, [1, 0, 0, 1], ks=(1, 2, 9), backend="torch")
    >>> {name: round(v, 4) for name, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'recall@1': 0.0, 'precision@1': 0.0, 'recall@2': 1.0, 'precision@2': 0.5, 'recall@9': 1.0,
     'precision@9': 0.5, 'r_precision': 0.5, 'map@r': 0.25, 'num_queries': 1, 'excluded_queries': 0}

    Leave-one-out with attributes; class 2 has a single image, so its query is excluded.
    Query 0's nearest non-matching item is 2 (attributes [0, 1] vs [1, 0]: cosine 0).

    >>> x = [[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0], [0.1, 1.0]]
    >>> a = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    >>> m = retrieval_metrics(x, [0, 0, 2, 1, 1], ks=(1,), query_attrs=a, backend="torch")
    >>> {name: round(v, 4) for name, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'recall@1': 1.0, 'precision@1': 1.0, 'r_precision': 1.0, 'map@r': 1.0, 'attr_sim@1': 0.3536,
     'num_queries': 4, 'excluded_queries': 1}
    """
    per_query, num_queries = per_query_metrics(
        query_emb, query_labels, gallery_emb, gallery_labels, ks, query_attrs, gallery_attrs,
        backend=backend, device=device, normalize=normalize, chunk_bytes=chunk_bytes,
    )  # fmt: skip
    return summarize(per_query, num_queries)


def summarize(per_query: dict[str, np.ndarray], num_queries: int) -> dict[str, float | int]:
    """Each metric's mean over the queries it is defined for (NaN: none); the query counts."""
    result: dict[str, float | int] = {}
    for key, found in per_query.items():
        finite = found[~np.isnan(found)]
        result[key] = float(finite.mean()) if len(finite) else math.nan
    evaluated = len(next(iter(per_query.values()))) if per_query else 0
    result["num_queries"] = evaluated
    result["excluded_queries"] = num_queries - evaluated
    return result


def per_query_metrics(
    query_emb: ArrayLike,
    query_labels: ArrayLike,
    gallery_emb: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    ks: Sequence[int] = (1, 10),
    query_attrs: ArrayLike | None = None,
    gallery_attrs: ArrayLike | None = None,
    *,
    backend: str = "auto",
    device: str | torch.device | None = None,
    normalize: bool = True,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[dict[str, np.ndarray], int]:
    """`retrieval_metrics` before the mean: every metric's value per scored query (queries with no
    relevant item are not scored), in query order, and the number of queries given."""
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    loo = gallery_emb is None
    if loo != (gallery_labels is None):
        raise ValueError("give both gallery_emb and gallery_labels, or neither (leave-one-out)")
    q = _as_matrix(query_emb, "query embeddings")
    if gallery_emb is None or gallery_labels is None:  # leave-one-out (both None, checked above)
        g = q
        (q_labels,) = class_ids(_as_labels(query_labels))
        g_labels = q_labels
    else:
        g = _as_matrix(gallery_emb, "gallery embeddings")  # one mapping for both, so a query label and a gallery label match exactly when equal
        q_labels, g_labels = class_ids(_as_labels(query_labels), _as_labels(gallery_labels))
    if len(q) != len(q_labels) or len(g) != len(g_labels):
        raise ValueError(f"embeddings/labels lengths differ: query {len(q)}/{len(q_labels)}, gallery {len(g)}/{len(g_labels)}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    with_attrs = query_attrs is not None
    if not loo and with_attrs != (gallery_attrs is not None):
        raise ValueError("attributes need both query_attrs and gallery_attrs (query-gallery protocol)")

    name, dev = resolve_backend(backend, device if device is not None else gpu_of(query_emb))
    q = q.to(dev)
    g = q if loo else g.to(dev)
    if normalize:
        q = l2_normalize(q)
        g = q if loo else l2_normalize(g)
    r_all = count_relevant(q_labels, g_labels, loo)
    evaluated = np.flatnonzero(r_all > 0)
    per_query: dict[str, list[torch.Tensor]] = {}
    gallery_size = len(g) - int(loo)
    if len(evaluated):
        searcher = make_searcher(name, g, chunk_bytes)
        g_labels_dev = torch.as_tensor(g_labels, device=dev)
        if query_attrs is not None:
            # float64: attribute vectors are small and attr_sim should not carry float32 rounding
            qa = l2_normalize(_as_matrix(query_attrs, "query attributes", torch.float64)).to(dev)
            ga = qa if loo or gallery_attrs is None else l2_normalize(_as_matrix(gallery_attrs, "gallery attributes", torch.float64)).to(dev)
            if len(qa) != len(q) or len(ga) != len(g):
                raise ValueError("attribute rows must match embedding rows")
        r_eval = torch.as_tensor(r_all[evaluated])
        # Columns each query needs: its K's and its R; for attr_sim@K, K non-matching ones past its R.
        need = torch.clamp(r_eval + max(ks) if with_attrs else r_eval.clamp(min=max(ks)), max=gallery_size)
        for start in range(0, len(evaluated), searcher.rows_per_chunk):
            rows = torch.as_tensor(evaluated[start : start + searcher.rows_per_chunk])
            rows_dev = rows.to(dev)
            k_chunk = int(need[start : start + len(rows)].max())
            neighbours = searcher.search(q[rows_dev], k_chunk, rows_dev if loo else None).to(dev)
            relevant = g_labels_dev[neighbours] == torch.as_tensor(q_labels[rows.numpy()], device=dev)[:, None]
            r_chunk = r_eval[start : start + len(rows)].to(dev)
            chunk_metrics = ranking_metrics(relevant, r_chunk, ks, gallery_size)
            if with_attrs:
                cos = _neighbour_attr_cosine(qa[rows_dev], ga, neighbours)
                chunk_metrics |= nonmatching_attr_similarity(relevant, cos, ks)
            for key, values in chunk_metrics.items():
                per_query.setdefault(key, []).append(values.cpu())
    keys = [f"{m}@{k}" for k in ks for m in ("recall", "precision")] + ["r_precision", "map@r"]
    keys += [f"attr_sim@{k}" for k in ks] if with_attrs else []
    out = {key: torch.cat(per_query[key]).numpy() if key in per_query else np.empty(0) for key in keys}
    return out, len(q)


def _neighbour_attr_cosine(query_attrs: torch.Tensor, gallery_attrs: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """(c, k) attribute cosine between each query and its ranked neighbours (unit rows in)."""
    c, k = neighbours.shape
    step = max(1, _ATTR_BLOCK_ELEMENTS // max(1, k * gallery_attrs.shape[1]))
    parts = [
        torch.bmm(gallery_attrs[neighbours[s : s + step]], query_attrs[s : s + step, :, None]).squeeze(2)
        for s in range(0, c, step)
    ]
    return torch.cat(parts) if parts else torch.empty(0, k, device=neighbours.device, dtype=torch.float64)

