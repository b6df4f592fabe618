"""`dmlbench bench-eval`: time exact kNN + all retrieval metrics against the GEMM floor.

On random clustered data (leave-one-out, like SOP/CUB) it measures, in one process:
- the full ``retrieval_metrics`` call (normalisation, chunked kNN, tie handling, every metric);
- the GEMM floor: the same chunked similarity matmuls alone (same chunk shapes, same buffer reuse),
  i.e. the unavoidable arithmetic of exact search; the report is total / floor;
- peak memory: ``ru_maxrss`` (the process's lifetime peak RSS) after the call minus the current RSS
  read from /proc just before it. tracemalloc does not see torch's allocations; this does. It can
  only over-estimate (if an earlier peak was higher), never under-estimate. On CUDA also
  ``torch.cuda.max_memory_allocated`` (torch backend only; faiss-gpu allocates outside torch);
- with ``--compare-pml``: PML's ``AccuracyCalculator()`` with default settings on the same data,
  in a fresh child interpreter so its time and peak memory are measured the same way and its
  memory cannot inflate ours.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dmlbench.evaluate import (
    DEFAULT_CHUNK_BYTES,
    TorchKnn,
    l2_normalize,
    resolve_backend,
    retrieval_metrics,
)

GIB = 2**30


@dataclass
class BenchReport:
    n: int
    dim: int
    classes: int
    ks: tuple[int, ...]
    backend: str
    device: str
    threads: int
    eval_s: float
    gemm_floor_s: float
    floor_ratio: float
    rows_per_chunk: int
    rss_before_gib: float
    peak_rss_gib: float
    peak_delta_gib: float
    cuda_peak_gib: float | None
    metrics: dict[str, float | int]
    eval_samples_s: list[float] = field(default_factory=list)
    floor_samples_s: list[float] = field(default_factory=list)
    pml_s: float | None = None
    pml_peak_delta_gib: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pml_speedup(self) -> float | None:
        return None if self.pml_s is None else self.pml_s / self.eval_s


def clustered_embeddings(
    n: int, dim: int, classes: int, seed: int = 0, noise: float = 3.0
) -> tuple[torch.Tensor, np.ndarray]:
    """(n, dim) float32 points around ``classes`` random N(0, I) centres with N(0, noise^2 I) noise,
    and their labels. noise = 3 at dim 512 gives recall@1 ~ 0.8 (realistic, not saturated).

    Generated in blocks so that making the data does not leave a high RSS peak behind.

    >>> x, y = clustered_embeddings(10, 4, 3)
    >>> tuple(x.shape), x.dtype, sorted(set(y.tolist())) <= [0, 1, 2]
    ((10, 4), torch.float32, True)
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    centres = torch.randn(classes, dim, generator=gen)
    x = torch.empty(n, dim)
    block = 8192
    for start in range(0, n, block):
        stop = min(start + block, n)
        x[start:stop] = centres[labels[start:stop]] + noise * torch.randn(stop - start, dim, generator=gen)
    return x, labels.numpy()


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; elsewhere the lifetime peak, an over-estimate)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Lifetime peak RSS of this process (ru_maxrss: KiB on Linux, bytes on macOS). The kernel
    updates the high-water mark lazily, so it is never reported below the current RSS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    if sys.platform.startswith("linux"):
        with open("/proc/self/statm") as f:
            peak = max(peak, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_floor_seconds(x: torch.Tensor, rows_per_chunk: int, device: torch.device) -> float:
    """Time of the chunked (rows x D) @ (D x N) similarity matmuls alone, as the kNN does them."""
    g = l2_normalize(x.to(device))
    searcher = TorchKnn(g, chunk_bytes=rows_per_chunk * 4 * len(g))
    _sync(device)
    start = time.perf_counter()
    for s in range(0, len(g), rows_per_chunk):
        searcher.similarities(g[s : s + rows_per_chunk], None)
    _sync(device)
    return time.perf_counter() - start


def pml_child_main(argv: list[str]) -> None:
    """Child process entry: PML AccuracyCalculator (default settings) on the same data; prints JSON."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    n, dim, classes, seed, device = int(argv[0]), int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    x, labels = clustered_embeddings(n, dim, classes, seed)
    x = l2_normalize(x)  # PML ranks by L2 distance: same order as cosine on unit vectors
    calc = AccuracyCalculator(device=torch.device(device))
    rss_before = current_rss_bytes()
    start = time.perf_counter()
    result = calc.get_accuracy(x, labels)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "peak_delta_bytes": peak_rss_bytes() - rss_before, "result": result}))


def time_pml(n: int, dim: int, classes: int, seed: int, device: str) -> dict[str, Any]:
    """Run pml_child_main in a fresh interpreter (a plain subprocess: no multiprocessing re-import
    of __main__) so its time and peak memory are its own."""
    code = "import sys; from dmlbench.perf.bench_eval import pml_child_main; pml_child_main(sys.argv[1:])"
    args = [sys.executable, "-c", code, str(n), str(dim), str(classes), str(seed), device]
    proc = subprocess.run(args, capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"PML AccuracyCalculator run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(
    n: int,
    dim: int,
    classes: int | None = None,
    ks: tuple[int, ...] = (1, 10),
    device: str | None = None,
    backend: str = "auto",
    compare_pml: bool = False,
    seed: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    repeat: int = 1,
) -> BenchReport:
    if repeat < 1 or n < 2:
        raise ValueError(f"need repeat >= 1 and n >= 2, got repeat={repeat}, n={n}")
    classes = classes or max(2, n // 50)
    name, dev = resolve_backend(backend, device)
    x, labels = clustered_embeddings(n, dim, classes, seed)
    # Warm-up on a small slice: thread pools, faiss import, CUDA context are not what we time.
    retrieval_metrics(x[:256], labels[:256], ks=ks, backend=name, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = current_rss_bytes()
    eval_times, floor_times = [], []
    rows = TorchKnn(x, chunk_bytes).rows_per_chunk  # the chunking retrieval_metrics uses (no allocation)
    for rep in range(repeat):
        # eval, floor, eval, floor, ...: drifting load on a shared machine hits both alike; min of each
        _sync(dev)
        start = time.perf_counter()
        metrics = retrieval_metrics(x, labels, ks=ks, backend=name, device=dev, chunk_bytes=chunk_bytes)
        _sync(dev)
        eval_times.append(time.perf_counter() - start)
        if rep == 0:  # memory from the first call, before the floor's buffer exists
            peak = peak_rss_bytes()
            cuda_peak = torch.cuda.max_memory_allocated(dev) / GIB if dev.type == "cuda" else None
        floor_times.append(gemm_floor_seconds(x, rows, dev))
    eval_s, floor_s = min(eval_times), min(floor_times)
    report = BenchReport(
        n=n, dim=dim, classes=classes, ks=tuple(ks), backend=name, device=str(dev),
        threads=torch.get_num_threads(), eval_s=eval_s, gemm_floor_s=floor_s, floor_ratio=eval_s / floor_s,
        rows_per_chunk=rows, rss_before_gib=rss_before / GIB, peak_rss_gib=peak / GIB,
        peak_delta_gib=(peak - rss_before) / GIB, cuda_peak_gib=cuda_peak, metrics=metrics,
        eval_samples_s=eval_times, floor_samples_s=floor_times,
    )  # fmt: skip
    if name != "torch":
        report.notes.append("GEMM floor is torch's matmul; the kNN ran on " + name)
    if compare_pml:
        pml = time_pml(n, dim, classes, seed, "cuda" if dev.type == "cuda" else "cpu")
        report.pml_s = pml["seconds"]
        report.pml_peak_delta_gib = pml["peak_delta_bytes"] / GIB
        ours_p1, theirs_p1 = metrics["precision@1"], pml["result"]["precision_at_1"]
        if abs(ours_p1 - theirs_p1) > 1e-6:
            report.notes.append(f"precision@1 differs from PML: {ours_p1:.6f} vs {theirs_p1:.6f}")
    return report


def format_report(r: BenchReport) -> str:
    lines = [
        f"bench-eval: n={r.n} dim={r.dim} classes={r.classes} ks={r.ks} backend={r.backend} "
        f"device={r.device} torch threads={r.threads} (leave-one-out)",
        f"  exact kNN + all metrics : {r.eval_s:8.2f} s  (min of {_samples(r.eval_samples_s)})",
        f"  GEMM floor              : {r.gemm_floor_s:8.2f} s  (min of {_samples(r.floor_samples_s)}; "
        f"({r.rows_per_chunk} x {r.dim}) @ ({r.dim} x {r.n}) chunks, same process)",
        f"  total / floor           : {r.floor_ratio:8.2f} x",
        f"  peak memory             : {r.peak_delta_gib:8.3f} GiB over RSS before the call "
        f"(RSS before {r.rss_before_gib:.3f} GiB, peak {r.peak_rss_gib:.3f} GiB; ru_maxrss - /proc RSS)",
    ]
    if r.cuda_peak_gib is not None:
        lines.append(f"  CUDA peak allocated     : {r.cuda_peak_gib:8.3f} GiB (torch.cuda.max_memory_allocated)")
    if r.pml_s is not None:
        lines.append(
            f"  PML AccuracyCalculator  : {r.pml_s:8.2f} s  (default settings, fresh process; peak "
            f"+{r.pml_peak_delta_gib:.3f} GiB) -> ours {r.pml_speedup:.1f}x faster"
        )
    shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.metrics.items())
    lines.append(f"  metrics                 : {shown}")
    lines += [f"  note: {note}" for note in r.notes]
    return "\n".join(lines)


def _samples(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "] s"
