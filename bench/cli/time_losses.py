"""`dmlbench time-losses`: every loss's forward+backward time against the matrix-multiply floor."""

from __future__ import annotations

import argparse
import sys

from dmlbench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmlbench.perf import time_losses

    parser.description = time_losses.__doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--batch", type=time_losses.parse_int_list, default=list(time_losses.DEFAULT_BATCHES), help="e.g. 128,256,512,1024"
    )
    parser.add_argument("--dim", type=time_losses.parse_int_list, default=list(time_losses.DEFAULT_DIMS), help="e.g. 128,512")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    parser.add_argument("--losses", default=None, help="comma-separated loss names (default: all registered)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per loss and shape (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--attributes", type=int, default=32, help="K for losses that need attributes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch

    from dmlbench.perf.time_losses import FLOOR_NAME, format_table, select_losses, time_losses

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = select_losses(args.losses)  # an unknown name raises UnknownNameError (exit 2)
    failures: list[str] = []

    def report(name: str, err: Exception) -> None:
        failures.append(name)
        print(f"warning: loss '{name}' failed and is left out: {type(err).__name__}: {err}", file=sys.stderr)

    rows = time_losses(
        names,
        args.batch,
        args.dim,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        num_attributes=args.attributes,
        seed=args.seed,
        on_error=report,
    )
    print(
        f"forward+backward, median of {args.repeats} on {args.device} ({torch.get_num_threads()} threads); "
        f"{FLOOR_NAME} = E @ E.T forward + backward (3 GEMMs)"
    )
    print(format_table(rows))
    return 1 if failures else 0
