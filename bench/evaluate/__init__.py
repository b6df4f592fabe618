"""Retrieval evaluation: exact kNN (chunked torch, faiss) and the metrics of DESIGN.md.

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

The kNN never materialises the full similarity matrix: queries go in chunks whose similarity block
is at most ``chunk_bytes``; per chunk only the top-k (k = the largest K or R the chunk needs) is kept.
Every backend returns the same neighbours in the same order: candidates are sorted by (similarity
desc, index asc), and a row whose k-th and (k+1)-th candidates tie is re-ranked exactly over the
whole gallery with a stable sort (rare on real features, common on duplicated test data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Backend = Literal["auto", "torch", "faiss-cpu", "faiss-gpu"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss-cpu", "faiss-gpu")
PROTOCOLS: tuple[str, ...] = ("query-gallery", "leave-one-out")
DEFAULT_CHUNK_BYTES = 256 * 2**20  # similarity block per query chunk: bounds peak memory
FAISS_GPU_MAX_K = 2048  # faiss-gpu's k-selection limit; larger k falls back to torch on the GPU
_ATTR_BLOCK_ELEMENTS = 2**24  # bound on (rows x neighbours x attributes) gathered at once

ArrayLike = np.ndarray | torch.Tensor | Sequence[float] | Sequence[int]


# ----------------------------------------------------------------------------- pure helpers


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; an all-zero row stays zero (its cosine with anything is 0).

    >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


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


def sort_by_similarity_then_index(sims: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order each row's candidates by similarity (desc), equal similarities by index (asc).

    >>> s, i = sort_by_similarity_then_index(torch.tensor([[0.5, 0.9, 0.5]]), torch.tensor([[7, 3, 2]]))
    >>> s.tolist(), i.tolist()
    ([[0.8999999761581421, 0.5, 0.5]], [[3, 2, 7]])
    """
    idx_sorted, perm = idx.sort(dim=1)
    sims_by_idx = sims.gather(1, perm)
    sims_out, perm2 = sims_by_idx.sort(dim=1, descending=True, stable=True)  # stable keeps index order
    return sims_out, idx_sorted.gather(1, perm2)


def order_ties_by_index(sims: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like sort_by_similarity_then_index for rows already sorted by similarity (desc): only rows
    holding equal similarities are re-sorted (few on real features; saves two sorts per chunk).

    >>> s, i = order_ties_by_index(torch.tensor([[0.9, 0.5, 0.5], [0.9, 0.7, 0.5]]), torch.tensor([[3, 7, 2], [5, 1, 0]]))
    >>> i.tolist()
    [[3, 2, 7], [5, 1, 0]]
    """
    rows = (sims[:, 1:] == sims[:, :-1]).any(dim=1).nonzero().flatten()
    if len(rows):
        sims, idx = sims.clone(), idx.clone()
        sims[rows], idx[rows] = sort_by_similarity_then_index(sims[rows], idx[rows])
    return sims, idx


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


# ----------------------------------------------------------------------------- kNN backends


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu_available() -> bool:
    if not faiss_available():
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(backend: str, device: str | torch.device | None) -> tuple[str, torch.device]:
    """The concrete backend and torch device for ``backend`` ("auto": faiss-gpu on a GPU, else torch).

    >>> resolve_backend("torch", "cpu")
    ('torch', device(type='cpu'))
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device is not None:
        dev = torch.device(device)
    else:
        dev = torch.device("cuda") if backend in ("auto", "faiss-gpu") and torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no GPU")
    if backend == "auto":
        if dev.type == "cuda" and faiss_gpu_available():
            return "faiss-gpu", dev
        return "torch", dev
    if backend == "faiss-cpu":
        if not faiss_available():
            raise ValueError("backend 'faiss-cpu' needs the faiss module: pip install 'dmlbench[faiss-cpu]'")
        return backend, torch.device("cpu")
    if backend == "faiss-gpu":
        if not faiss_gpu_available():
            raise ValueError("backend 'faiss-gpu' needs faiss with GPU support and a visible GPU")
        return backend, dev if dev.type == "cuda" else torch.device("cuda")
    return backend, dev


class TorchKnn:
    """Exact kNN by chunked matmul + top-k on one device; reuses one similarity buffer."""

    def __init__(self, gallery: torch.Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.gallery = gallery
        self.rows_per_chunk = max(1, chunk_bytes // (4 * max(1, len(gallery))))
        self._buffer: torch.Tensor | None = None

    def similarities(self, query: torch.Tensor, self_index: torch.Tensor | None) -> torch.Tensor:
        """(c, G) cosine block, written into a reused buffer; the query's own column set to -inf."""
        c = len(query)
        if self._buffer is None or len(self._buffer) < c:
            self._buffer = torch.empty(c, len(self.gallery), device=self.gallery.device, dtype=torch.float32)
        sims = self._buffer[:c]
        torch.mm(query, self.gallery.T, out=sims)
        if self_index is not None:
            sims[torch.arange(c, device=sims.device), self_index] = -torch.inf
        return sims

    def search(self, query: torch.Tensor, k: int, self_index: torch.Tensor | None = None) -> torch.Tensor:
        """Indices (c, k) of the k nearest gallery items of each query row, ties by lower index.

        ``self_index``: the query's own gallery index per row (leave-one-out) or None. Queries
        must have at most ``rows_per_chunk`` rows (callers chunk) to keep memory bounded.
        """
        num_candidates = len(self.gallery) - (0 if self_index is None else 1)
        k = min(k, num_candidates)
        sims = self.similarities(query, self_index)
        if k + 1 > num_candidates:  # everything is a neighbour: a full stable sort is exact
            return torch.sort(sims, dim=1, descending=True, stable=True)[1][:, :k]
        vals, idx = sims.topk(k + 1, dim=1, largest=True, sorted=True)
        vals, idx = order_ties_by_index(vals, idx)
        return _rerank_boundary_ties(vals, idx, k, lambda rows: sims[rows])


def _rerank_boundary_ties(
    vals: torch.Tensor, idx: torch.Tensor, k: int, full_rows: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Keep k of k+1 sorted candidates; rows where the k-th ties the (k+1)-th are re-ranked exactly
    (an item outside the candidates may tie too and win on index)."""
    tied = (vals[:, k - 1] == vals[:, k]).nonzero().flatten()
    out = idx[:, :k].clone()
    if len(tied):
        exact = torch.sort(full_rows(tied), dim=1, descending=True, stable=True)[1][:, :k]
        out[tied] = exact.to(out.device)
    return out


class FaissKnn:
    """Exact inner-product kNN with faiss (flat index), same tie rule as TorchKnn."""

    def __init__(self, gallery: torch.Tensor, use_gpu: bool, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        import faiss

        self.gallery_np = np.ascontiguousarray(gallery.detach().cpu().numpy(), dtype=np.float32)
        dim = self.gallery_np.shape[1]
        if use_gpu:
            self._resources = faiss.StandardGpuResources()
            self.index = faiss.GpuIndexFlatIP(self._resources, dim)
            self.max_k = FAISS_GPU_MAX_K
            exact_device = torch.device("cuda")
        else:
            self.index = faiss.IndexFlatIP(dim)
            self.max_k = 1 << 30
            exact_device = torch.device("cpu")
        self.index.add(self.gallery_np)
        # Exact re-ranking of tied rows (and k beyond faiss-gpu's limit) goes through torch.
        self.exact = TorchKnn(torch.from_numpy(self.gallery_np).to(exact_device), chunk_bytes)
        self.rows_per_chunk = self.exact.rows_per_chunk

    def search(self, query: torch.Tensor, k: int, self_index: torch.Tensor | None = None) -> torch.Tensor:
        num_gallery = len(self.gallery_np)
        loo = self_index is not None
        num_candidates = num_gallery - int(loo)
        k = min(k, num_candidates)
        wanted = min(k + 1 + int(loo), num_gallery)  # one extra to detect ties, one for the query itself
        q_exact = query.to(self.exact.gallery.device)
        s_exact = None if self_index is None else self_index.to(q_exact.device)
        if wanted > self.max_k or k + 1 > num_candidates:
            return self.exact.search(q_exact, k, s_exact).cpu()
        q_np = np.ascontiguousarray(query.detach().cpu().numpy(), dtype=np.float32)
        sims_np, idx_np = self.index.search(q_np, wanted)
        sims, idx = torch.from_numpy(sims_np), torch.from_numpy(idx_np)
        if loo:
            keep = idx != self_index.cpu()[:, None]
            keep[keep.all(dim=1), -1] = False  # query not among them: drop the surplus last one
            sims, idx = sims[keep].view(len(idx), -1), idx[keep].view(len(idx), -1)
        sims, idx = sort_by_similarity_then_index(sims, idx)
        return _rerank_boundary_ties(sims, idx, k, lambda rows: self.exact.similarities(q_exact[rows], _rows_of(s_exact, rows))).cpu()


def _rows_of(self_index: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if self_index is None else self_index[rows.to(self_index.device)]


def knn(
    query: torch.Tensor,
    gallery: torch.Tensor | None,
    k: int,
    *,
    backend: str = "auto",
    device: str | torch.device | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """(Q, k) indices of the k most similar gallery rows (inner product), ties -> lower index.

    ``gallery=None``: leave-one-out on ``query`` (each row excluded by its own index).

    >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> knn(x, None, 2, backend="torch").tolist()
    [[1, 3], [0, 3], [0, 1], [0, 1]]
    """
    name, dev = resolve_backend(backend, device if device is not None else _gpu_of(query))
    loo = gallery is None
    gal = query if loo else gallery
    searcher = _make_searcher(name, gal.float().to(dev), chunk_bytes)
    parts = []
    for start in range(0, len(query), searcher.rows_per_chunk):
        stop = min(start + searcher.rows_per_chunk, len(query))
        rows = torch.arange(start, stop, device=dev)
        parts.append(searcher.search(query[start:stop].float().to(dev), k, rows if loo else None).cpu())
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long)


def _gpu_of(x: object) -> torch.device | None:
    """The GPU a tensor lives on (so its kNN stays there), else None (the backend decides)."""
    return x.device if isinstance(x, torch.Tensor) and x.is_cuda else None


def _make_searcher(name: str, gallery: torch.Tensor, chunk_bytes: int) -> TorchKnn | FaissKnn:
    if name == "torch":
        return TorchKnn(gallery, chunk_bytes)
    return FaissKnn(gallery, use_gpu=name == "faiss-gpu", chunk_bytes=chunk_bytes)


# ----------------------------------------------------------------------------- metrics


def _as_labels(x: ArrayLike) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)


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
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    loo = gallery_emb is None
    if loo != (gallery_labels is None):
        raise ValueError("give both gallery_emb and gallery_labels, or neither (leave-one-out)")
    q = _as_matrix(query_emb, "query embeddings")
    q_labels = _as_labels(query_labels)
    g = q if loo else _as_matrix(gallery_emb, "gallery embeddings")
    g_labels = q_labels if loo else _as_labels(gallery_labels)
    if len(q) != len(q_labels) or len(g) != len(g_labels):
        raise ValueError(f"embeddings/labels lengths differ: query {len(q)}/{len(q_labels)}, gallery {len(g)}/{len(g_labels)}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    with_attrs = query_attrs is not None
    if not loo and with_attrs != (gallery_attrs is not None):
        raise ValueError("attributes need both query_attrs and gallery_attrs (query-gallery protocol)")

    name, dev = resolve_backend(backend, device if device is not None else _gpu_of(query_emb))
    q = q.to(dev)
    g = q if loo else g.to(dev)
    if normalize:
        q = l2_normalize(q)
        g = q if loo else l2_normalize(g)
    r_all = count_relevant(q_labels, g_labels, loo)
    evaluated = np.flatnonzero(r_all > 0)
    result: dict[str, float | int] = {}
    per_query: dict[str, list[torch.Tensor]] = {}
    gallery_size = len(g) - int(loo)
    if len(evaluated):
        searcher = _make_searcher(name, g, chunk_bytes)
        g_labels_dev = torch.as_tensor(g_labels, device=dev)
        if with_attrs:
            # float64: attribute vectors are small and attr_sim should not carry float32 rounding
            qa = l2_normalize(_as_matrix(query_attrs, "query attributes", torch.float64)).to(dev)
            ga = qa if loo else l2_normalize(_as_matrix(gallery_attrs, "gallery attributes", torch.float64)).to(dev)
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
    for key in keys:
        values = torch.cat(per_query[key]).numpy() if key in per_query else np.empty(0)
        finite = values[~np.isnan(values)]
        result[key] = float(finite.mean()) if len(finite) else math.nan
    result["num_queries"] = len(evaluated)
    result["excluded_queries"] = len(q) - len(evaluated)
    return result


def _neighbour_attr_cosine(query_attrs: torch.Tensor, gallery_attrs: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """(c, k) attribute cosine between each query and its ranked neighbours (unit rows in)."""
    c, k = neighbours.shape
    step = max(1, _ATTR_BLOCK_ELEMENTS // max(1, k * gallery_attrs.shape[1]))
    parts = [
        torch.bmm(gallery_attrs[neighbours[s : s + step]], query_attrs[s : s + step, :, None]).squeeze(2)
        for s in range(0, c, step)
    ]
    return torch.cat(parts) if parts else torch.empty(0, k, device=neighbours.device, dtype=torch.float64)


def evaluate_layers(
    features: Mapping[str, torch.Tensor],
    labels: np.ndarray,
    splits: np.ndarray,
    protocol: str,
    ks: Sequence[int],
    attributes: np.ndarray | None = None,
    backend: str = "auto",
) -> dict[str, dict[str, float | int]]:
    """Score every layer's features (Emb / FC / Conv from one extraction pass) under a protocol.

    ``features[layer]``: (N, D) rows in the order of ``labels``/``splits``. "query-gallery" ranks
    the rows whose split is "query" against those whose split is "gallery" (other rows unused);
    "leave-one-out" uses every row as query and gallery. Features are L2-normalised here.

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
