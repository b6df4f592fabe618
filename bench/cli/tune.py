"""`dmlbench tune SPEC`: equal-budget hyper-parameter search on validation folds, then the final stage."""

from __future__ import annotations

import argparse

from dmlbench.sweep.job import DEFAULT_RUNNER
from dmlbench.sweep.spec import EXECUTOR_KINDS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="tuning spec YAML, a shipped preset name (tune-synthshop), or a tune folder")
    p.add_argument("--executor", choices=EXECUTOR_KINDS, help="override the spec's executor kind")
    p.add_argument("--profile", help="executor profile YAML (e.g. slurm/profiles/local.yaml) or its bare name")
    p.add_argument("--dry-run", action="store_true", help="check the spec and show the plan; submit nothing")
    p.add_argument("--trials", type=int, metavar="N", help="trials per method (replaces the spec's `trials`)")
    p.add_argument("--folds", type=int, metavar="K", help="validation folds per trial (replaces `folds`)")
    p.add_argument("--seeds", type=int, metavar="S", help="final-stage seeds per method (replaces `seeds`)")
    p.add_argument("--out", metavar="DIR", help="tune folder (replaces `output_dir`; a smaller study needs its own)")
    p.add_argument("--runner", default=DEFAULT_RUNNER, help=argparse.SUPPRESS)  # tests: a stand-in trainer


def run(args: argparse.Namespace) -> int:
    import time

    from dmlbench.tune import require_optuna

    require_optuna()
    from dmlbench.tune.loop import run_tune
    from dmlbench.tune.spaces import describe_space
    from dmlbench.tune.spec import check_spec, load_spec

    overrides = {k: getattr(args, k) for k in ("trials", "folds", "seeds") if getattr(args, k) is not None}
    if args.out:
        overrides["output_dir"] = args.out
    spec = load_spec(args.spec, executor=args.executor, profile=args.profile, overrides=overrides)
    cells = len(spec.methods) * (spec.trials * spec.folds + spec.seeds)
    print(
        f"tune '{spec.name}': {len(spec.methods)} methods x {spec.trials} trials x {spec.folds} folds, then {spec.seeds} seeds "
        f"per method on test ({cells} runs) -> {spec.output_dir} (executor: {spec.executor.kind}, {spec.parallel} trial(s) in flight)"
    )
    for method in spec.methods:
        print(f"  {method.name}: {len(method.space)} searched: {describe_space(method.space)}")
    if args.dry_run:
        check_spec(spec)
        print("spec OK; nothing submitted (--dry-run)")
        return 0
    started = time.time()
    protocol = run_tune(spec, runner=args.runner)
    print(f"tuning + final stage took {time.time() - started:.0f} s")
    for name, info in protocol["methods"].items():
        print(f"  {name}: {info['done']} done, {info['failed']} failed of {spec.trials}; best val {spec.metric} {info['best']}")
    print(f"next: dmlbench status {spec.output_dir}; dmlbench collect {spec.output_dir}")
    if protocol.get("final_failed"):
        print(f"{len(protocol['final_failed'])} final-stage run(s) failed: {', '.join(protocol['final_failed'])}")
        return 1
    return 0
