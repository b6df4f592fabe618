"""Index generation speed: the sampler must never be the bottleneck (>= 100,000 samples/s on CPU).

Run: ``python -m pytest tests/benchmarks/test_bench_samplers.py --benchmark-enable --benchmark-only``.
One round builds a whole epoch of an SOP-sized training set (59,551 images, 11,318 classes of 2-12
images, 12 super-classes); samples/s = batch positions generated per second.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dmlbench import samplers

SOP_TRAIN_IMAGES, SOP_TRAIN_CLASSES, SOP_SUPER_CLASSES = 59_551, 11_318, 12
MIN_SAMPLES_PER_S = 100_000


def sop_like_labels() -> tuple[np.ndarray, np.ndarray]:
    """Class sizes 2..12 summing to exactly 59,551 (SOP: ~5.3 images per class), shuffled."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 9, SOP_TRAIN_CLASSES)
    while (excess := sizes.sum() - SOP_TRAIN_IMAGES) != 0:  # nudge random classes until the total matches
        pick = rng.integers(0, SOP_TRAIN_CLASSES, abs(excess))
        sizes[pick] = np.clip(sizes[pick] - np.sign(excess), 2, 12)
    labels = rng.permutation(np.repeat(np.arange(SOP_TRAIN_CLASSES), sizes))
    groups = rng.integers(0, SOP_SUPER_CLASSES, SOP_TRAIN_CLASSES)[labels]  # one super-class per class
    return labels, groups


CASES = [
    ("image-wise", {}),
    ("batch-wise", {}),
    ("batch-wise", {"small_class_policy": "take-all"}),
    ("category-balanced", {}),
]


@pytest.mark.parametrize(
    ("name", "params"), CASES, ids=[f"{n}-{p.get('small_class_policy', '')}" for n, p in CASES]
)
def test_epoch_index_generation_speed(benchmark: BenchmarkFixture, name: str, params: dict) -> None:
    labels, groups = sop_like_labels()
    assert (len(labels), len(np.unique(labels))) == (SOP_TRAIN_IMAGES, SOP_TRAIN_CLASSES)
    sampler = samplers.build(name, labels, seed=0, groups=groups, **params)
    epochs = itertools.count()  # a new epoch every round: the plan cache never answers

    def one_epoch() -> int:
        return len(sampler.plan(next(epochs)).indices)

    started = time.perf_counter()
    samples = benchmark(one_epoch)
    seconds = benchmark.stats.stats.mean if benchmark.stats is not None else time.perf_counter() - started
    samples_per_s = samples / seconds
    benchmark.extra_info.update(
        {"samples_per_epoch": samples, "batches": len(sampler), "samples_per_s": samples_per_s}
    )
    print(f"\n{name} {params}: {samples} samples in {seconds * 1e3:.1f} ms = {samples_per_s:,.0f} samples/s")
    assert samples_per_s >= MIN_SAMPLES_PER_S
