"""`dmlbench bench-train`: training images/s, real input pipeline vs pre-loaded tensors."""

from __future__ import annotations

import argparse
import itertools


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--amp", default=None, help="comma list of train.amp settings to compare, e.g. off,bf16 (CUDA)")
    p.add_argument(
        "--compile",
        default=None,
        help="comma list of train.compile settings to compare, e.g. off,default (compilation happens in --warmup)",
    )



def run(args: argparse.Namespace) -> int:
    import torch
    from tabulate import tabulate

    from dmlbench.config import apply_overrides, load_config
    from dmlbench.perf.bench_train import measure
    from dmlbench.train.distributed import leave

    cfg = load_config(args.config, args.overrides)
    amps = args.amp.split(",") if args.amp else [cfg.train.amp]
    compiles = args.compile.split(",") if args.compile else [cfg.train.compile]
    rows = []
    reports, processes = True, 1
    try:
        for amp, compile_mode in itertools.product(amps, compiles):
            result = measure(apply_overrides(cfg, [f"train.amp={amp}", f"train.compile={compile_mode}"]), args.steps, args.warmup)
            reports, processes = result.reports, result.processes
            rows.append(
                [amp, compile_mode, f"{result.pipeline_images_per_s:.1f}", f"{result.tensors_images_per_s:.1f}", f"{result.ratio:.2f}"]
            )
    finally:
        leave()
    if not reports:  # a data-parallel measurement: process 0 prints it
        return 0
    device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
    scale = f", {processes} data-parallel processes (images/s of the global batch)" if processes > 1 else ""
    print(
        f"bench-train on {device}{scale}: {cfg.model.backbone} at {cfg.data.image_size} px, {cfg.sampler.name}, "
        f"num_workers={cfg.train.num_workers}, {args.steps} timed steps"
    )
    print(tabulate(rows, headers=["amp", "compile", "pipeline img/s", "pre-loaded img/s", "ratio"], tablefmt="github"))
    return 0
