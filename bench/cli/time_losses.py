"""`dmlbench time-losses`: every loss's forward+backward time against the matrix-multiply floor."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dmlbench.errors import UsageError


def loss_params_by_name(names: list[str], pairs: list[str]) -> dict[str, dict[str, Any]]:
    """`-p key=value` options -> per-loss params: each key goes to every listed loss that takes it."""
    from dmlbench.config import parse_override
    from dmlbench.losses import LOSSES

    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"-p '{pair}' must look like key=value (e.g. -p margin=0.1)")
        key, value = parse_override(pair)
        takers = [n for n in names if key in LOSSES.params(n)]
        if not takers:
            raise UsageError(f"-p {key}: none of the listed losses ({', '.join(names)}) takes a parameter '{key}'; "
                             "see `dmlbench list losses`")
        for name in takers:
            out[name][key] = value
    for name, given in out.items():
        LOSSES.check_params(name, given)  # a bad value or a missing required parameter: one line, exit 2
    return out


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
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loss parameter, given to every listed loss that takes KEY (repeatable), e.g. -p margin=0.1",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from dmlbench.perf.time_losses import FLOOR_NAME, format_table, select_losses, time_losses

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = select_losses(args.losses)  # an unknown name raises UnknownNameError (exit 2)
    params = loss_params_by_name(names, args.param)
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
        params=params,
    )
    print(
        f"forward+backward, median of {args.repeats} on {args.device} ({torch.get_num_threads()} threads); "
        f"{FLOOR_NAME} = E @ E.T forward + backward (3 GEMMs); each multiple is against the floor timed "
        "alternately with that loss"
    )
    print(format_table(rows))
    return 1 if failures else 0
