"""Retrieval evaluation: exact kNN (`knn`: chunked torch, faiss), the metrics and their definitions
(`metrics`), and per-layer scoring under a protocol (`layers`). The names other modules use are
re-exported here."""

from dmlbench.config.schema import BACKENDS, PROTOCOLS  # defined once, with the config that checks them
from dmlbench.evaluate.knn import (
    DEFAULT_CHUNK_BYTES,
    FAISS_GPU_MAX_K,
    FaissKnn,
    TorchKnn,
    faiss_available,
    faiss_gpu_available,
    knn,
    l2_normalize,
    order_ties_by_index,
    resolve_backend,
    sort_by_similarity_then_index,
)
from dmlbench.evaluate.layers import evaluate_layers
from dmlbench.evaluate.metrics import (
    count_relevant,
    nonmatching_attr_similarity,
    ranking_metrics,
    retrieval_metrics,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_CHUNK_BYTES",
    "FAISS_GPU_MAX_K",
    "PROTOCOLS",
    "FaissKnn",
    "TorchKnn",
    "count_relevant",
    "evaluate_layers",
    "faiss_available",
    "faiss_gpu_available",
    "knn",
    "l2_normalize",
    "nonmatching_attr_similarity",
    "order_ties_by_index",
    "ranking_metrics",
    "resolve_backend",
    "retrieval_metrics",
    "sort_by_similarity_then_index",
]
