"""Exact kNN by inner product: the chunked torch searcher, faiss (CPU/GPU), and the backend choice.

The kNN never materialises the full similarity matrix: queries go in chunks whose similarity block
is at most ``chunk_bytes``; per chunk only the top-k is kept. Every backend returns the same
neighbours in the same order: candidates are sorted by (similarity desc, index asc), and a row whose
k-th and (k+1)-th candidates tie is re-ranked exactly over the whole gallery with a stable sort
(rare on real features, common on duplicated test data).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dmlbench.config.schema import BACKENDS

DEFAULT_CHUNK_BYTES = 256 * 2**20  # similarity block per query chunk: bounds peak memory
FAISS_GPU_MAX_K = 2048  # faiss-gpu's k-selection limit; larger k falls back to torch on the GPU


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; an all-zero row stays zero (its cosine with anything is 0).

    >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)



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
        self.index: faiss.Index  # a GPU or a CPU flat index; both search alike
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
        if self_index is not None:  # leave-one-out
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
    name, dev = resolve_backend(backend, device if device is not None else gpu_of(query))
    gal = query if gallery is None else gallery  # None: leave-one-out
    searcher = make_searcher(name, gal.float().to(dev), chunk_bytes)
    parts = []
    for start in range(0, len(query), searcher.rows_per_chunk):
        stop = min(start + searcher.rows_per_chunk, len(query))
        rows = torch.arange(start, stop, device=dev)
        parts.append(searcher.search(query[start:stop].float().to(dev), k, rows if gallery is None else None).cpu())
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long)


def gpu_of(x: object) -> torch.device | None:
    """The GPU a tensor lives on (so its kNN stays there), else None (the backend decides)."""
    return x.device if isinstance(x, torch.Tensor) and x.is_cuda else None


def make_searcher(name: str, gallery: torch.Tensor, chunk_bytes: int) -> TorchKnn | FaissKnn:
    if name == "torch":
        return TorchKnn(gallery, chunk_bytes)
    return FaissKnn(gallery, use_gpu=name == "faiss-gpu", chunk_bytes=chunk_bytes)


