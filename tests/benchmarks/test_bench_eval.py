"""Evaluation-engine benchmarks: reported in ``extra_info``, never asserted.

Skipped in normal runs (``--benchmark-skip``); run with
``python -m pytest tests/benchmarks/test_bench_eval.py --benchmark-only``. The same numbers come from
``dmlbench bench-eval --n 60000 --dim 512`` and ``dmlbench bench-eval --n 10000 --compare-pml``.
Targets (issue #6): 60k x 512 on CPU within 1.3x the GEMM floor and 2 GB peak; 10k at least 3x
faster than PML's AccuracyCalculator with default settings.
"""

from __future__ import annotations

import pytest
import torch

from dmlbench.evaluate import TorchKnn, retrieval_metrics
from dmlbench.perf.bench_eval import (
    GIB,
    clustered_embeddings,
    current_rss_bytes,
    gemm_floor_seconds,
    peak_rss_bytes,
    time_pml,
)


def _timed_eval(benchmark, n: int, dim: int, device: str, rounds: int) -> tuple[int, int, int]:
    classes = n // 50
    x, labels = clustered_embeddings(n, dim, classes)
    retrieval_metrics(x[:256], labels[:256], backend="torch", device=device)  # warm-up
    rss_before = current_rss_bytes()
    metrics = benchmark.pedantic(
        retrieval_metrics, args=(x, labels), kwargs={"backend": "torch", "device": device}, rounds=rounds, iterations=1
    )
    # ru_maxrss is the process's lifetime peak: an upper bound on this call's peak.
    benchmark.extra_info["peak_rss_delta_gib"] = (peak_rss_bytes() - rss_before) / GIB
    floor_s = gemm_floor_seconds(x, TorchKnn(x).rows_per_chunk, torch.device(device))
    benchmark.extra_info["gemm_floor_s"] = floor_s
    benchmark.extra_info["floor_ratio_min"] = benchmark.stats.stats.min / floor_s
    benchmark.extra_info["recall@1"] = metrics["recall@1"]
    return n, dim, classes


def test_eval_60k_cpu_against_gemm_floor(benchmark):
    _timed_eval(benchmark, 60000, 512, "cpu", rounds=1)


def test_eval_10k_cpu_against_pml_accuracy_calculator(benchmark):
    n, dim, classes = _timed_eval(benchmark, 10000, 512, "cpu", rounds=3)
    pml = time_pml(n, dim, classes, seed=0, device="cpu")  # fresh process, default settings
    benchmark.extra_info["pml_default_s"] = pml["seconds"]
    benchmark.extra_info["pml_peak_delta_gib"] = pml["peak_delta_bytes"] / GIB
    benchmark.extra_info["speedup_vs_pml"] = pml["seconds"] / benchmark.stats.stats.min


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_eval_60k_cuda_against_gemm_floor(benchmark):
    _timed_eval(benchmark, 60000, 512, "cuda", rounds=3)
