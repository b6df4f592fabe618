"""`dmlbench bench-eval`: exact kNN + retrieval metrics timed against the GEMM floor."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dmlbench.config import BACKENDS
from dmlbench.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dmlbench.perf import bench_eval

    p.description = bench_eval.__doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--n", type=int, default=60000, help="number of embeddings (queries = gallery)")
    p.add_argument("--dim", type=int, default=512, help="embedding dimension")
    p.add_argument("--classes", type=int, default=None, help="number of classes (default n // 50)")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10], help="K values for recall/precision@K")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu; 'auto' backend uses cuda if visible)")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="kNN backend")
    p.add_argument(
        "--compare-pml",
        action="store_true",
        help="also time PML's AccuracyCalculator (default settings rank the whole gallery: O(n^2) "
        "memory, ~6 GB at n=10k, tens of GB at 60k)",
    )
    p.add_argument("--repeat", type=int, default=1, help="alternate eval and floor R times; report the min of each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--chunk-mib", type=float, default=bench_eval.DEFAULT_CHUNK_BYTES / 2**20, help="similarity block per chunk")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from dmlbench.perf.bench_eval import format_report, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n < 2 or args.repeat < 1 or args.dim < 1:
        raise UsageError(f"need --n >= 2, --dim >= 1 and --repeat >= 1, got --n {args.n} --dim {args.dim} --repeat {args.repeat}")
    report = run_bench(
        n=args.n, dim=args.dim, classes=args.classes, ks=tuple(args.ks), device=args.device,
        backend=args.backend, compare_pml=args.compare_pml, seed=args.seed,
        chunk_bytes=int(args.chunk_mib * 2**20), repeat=args.repeat,
    )  # fmt: skip
    print(format_report(report))
    if args.json:
        payload = asdict(report) | {"pml_speedup": report.pml_speedup}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0
