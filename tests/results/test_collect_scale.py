"""The functional check of tests/benchmarks/test_bench_collect.py in every CI run (the benchmark, skipped
there, keeps the timing): many finished runs collect into one row per run x layer x metric x K."""

from __future__ import annotations

from pathlib import Path

from support.synthetic_runs import recall_metrics, write_run

from dmlbench.results.collect import collect


def test_collect_many_runs(tmp_path: Path) -> None:
    n = 60
    for i in range(n):
        layers = {layer: recall_metrics(0.3 + 0.01 * (i % 10)) for layer in ("emb", "fc", "conv")}
        write_run(tmp_path / "runs", {"loss.name": f"loss{i % 10}", "loss.params.alpha": 1.0 + (i // 10) % 3, "seed": i // 30}, layers)
    collection = collect(tmp_path)
    assert len(collection.finished) == n and not collection.problems
    assert len(collection.frame) == n * 3 * 6
    assert collection.frame.groupby("run_id").size().eq(18).all()
    assert sorted(collection.frame["seed"].unique()) == [0, 1]
