"""Input-pipeline costs of this session's mechanisms, as ratios against a floor measured in the same run.

Skipped in normal runs (``--benchmark-skip``); run with
``python -m pytest tests/benchmarks/test_bench_input.py --benchmark-only``. Reported in ``extra_info``:
- per-image augmentation seeding (SeededViews) against the same item without seeding, and against the
  obvious alternative (``torch.random.fork_rng`` + ``torch.manual_seed``);
- a scan answered by the image-scan cache against the full decode it replaces.
The end-to-end view of the same pipeline is ``dmlbench bench-train`` (real pipeline vs pre-loaded tensors).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from dmlbench.data.dataset import ImageDataset
from dmlbench.data.scan import scan_images
from dmlbench.data.synthshop import load_synthshop
from dmlbench.data.transforms import IMAGENET_NORMALIZATION, build_transform
from dmlbench.train import SeededViews, augmentation_seeds


def _best_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def test_seeded_augmentation_overhead(benchmark: BenchmarkFixture, tiny_synthshop: Path) -> None:
    index = load_synthshop(tiny_synthshop)
    images = ImageDataset(index, index.indices("train"), build_transform(32, True, IMAGENET_NORMALIZATION))
    views = SeededViews(images)
    n = len(images)
    seeds = augmentation_seeds(0, 0, 0, n)

    def plain() -> None:
        for i in range(n):
            images[i]

    def fork_rng_seeded() -> None:
        for i, seed in enumerate(seeds):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                images[i]

    def seeded() -> None:
        for i, seed in enumerate(seeds):
            views[(i, seed)]

    floor_s = _best_seconds(plain)
    benchmark.pedantic(seeded, rounds=5, iterations=1, warmup_rounds=1)
    seeded_s = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {
            "images": n,
            "plain_us_per_image": floor_s / n * 1e6,
            "seeded_overhead_us_per_image": (seeded_s - floor_s) / n * 1e6,
            "fork_rng_overhead_us_per_image": (_best_seconds(fork_rng_seeded) - floor_s) / n * 1e6,
            "ratio_to_plain": seeded_s / floor_s,
        }
    )


def test_cached_image_scan_against_full_decode(
    benchmark: BenchmarkFixture, tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    index = load_synthshop(tiny_synthshop)
    paths = list(index.paths)
    full_s = _best_seconds(lambda: scan_images(index.root, paths, progress=False, use_cache=False))
    assert scan_images(index.root, paths, progress=False) == []  # fills the cache
    benchmark.pedantic(lambda: scan_images(index.root, paths, progress=False), rounds=5, iterations=1)
    benchmark.extra_info.update(
        {"images": len(paths), "full_decode_s": full_s, "ratio_to_full_decode": benchmark.stats.stats.min / full_s}
    )
