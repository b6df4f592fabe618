"""`collect` over 1,000 finished run folders must take under 5 s (reported by pytest-benchmark).

Run: python -m pytest tests/benchmarks/test_bench_collect.py --benchmark-enable --benchmark-only

The functional checks (not the timings) also run in every CI run, at a smaller size: tests/results/test_collect_scale.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.results.collect import collect

N_RUNS = 1000


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 finished runs (10 losses x 5 alphas x 20 seeds), 3 layers each, like a real sweep."""
    root = tmp_path_factory.mktemp("sweep1000")
    for i in range(N_RUNS):
        loss, alpha, seed = f"loss{i % 10}", 1.0 + (i // 10) % 5, i // 50
        r1 = 0.3 + 0.01 * (i % 10)
        layers = {layer: recall_metrics(r1) for layer in ("emb", "fc", "conv")}
        write_run(root / "runs", {"loss.name": loss, "loss.params.alpha": alpha, "seed": seed}, layers)
    return root


def test_collect_1000_runs(benchmark, big_sweep: Path) -> None:  # noqa: ANN001 - pytest-benchmark fixture
    collection = benchmark.pedantic(collect, args=(big_sweep,), rounds=3, iterations=1)
    assert len(collection.finished) == N_RUNS and not collection.problems
    assert len(collection.frame) == N_RUNS * 3 * 6
    assert benchmark.stats["max"] < 5.0
