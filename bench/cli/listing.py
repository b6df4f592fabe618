"""`dmlbench list`: every registry entry with its parameters and defaults."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

KINDS = ("losses", "samplers", "datasets", "backbones", "sweeps", "tunes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=KINDS)


def run(args: argparse.Namespace) -> int:
    print(describe_registries(args.what))
    return 0


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if v != "<required>" else f"{k} (required)" for k, v in params.items()) or "-"


def describe_registries(what: str | None = None) -> str:
    from dmlbench import losses, samplers
    from dmlbench.data import DATASETS
    from dmlbench.model import BACKBONES
    from dmlbench.registry import init_parameter_names

    sections: list[str] = []
    if what in (None, "losses"):
        rows: list[list[object]] = []
        for name in losses.LOSSES:
            cls = losses.LOSSES.get(name)
            flags = [flag for flag, on in cls.capabilities().items() if on]
            given = [k for k in losses.LOSS_HARNESS_ARGS if k in init_parameter_names(cls)]
            harness = f"; from the harness: {', '.join(given)}" if given else ""
            rows.append([name, _fmt_params(losses.LOSSES.params(name)) + harness, ", ".join(flags) or "-"])
        sections.append("Losses\n" + tabulate(rows, headers=["name", "parameters (defaults)", "capabilities"]))
    if what in (None, "samplers"):
        rows = [
            [name, _fmt_params(samplers.SAMPLERS.params(name)), samplers.SAMPLERS.get(name).layout]
            for name in samplers.SAMPLERS
        ]
        sections.append("Samplers\n" + tabulate(rows, headers=["name", "parameters (defaults)", "batch layout"]))
    if what in (None, "datasets"):
        rows = [[name, _fmt_params(DATASETS.params(name))] for name in DATASETS]
        sections.append("Datasets (options go under data.options)\n" + tabulate(rows, headers=["name", "options (defaults)"]))
    if what in (None, "backbones"):
        rows = [[name, BACKBONES.get(name).feature_dim, BACKBONES.get(name).weights_file] for name in BACKBONES]
        sections.append("Backbones\n" + tabulate(rows, headers=["name", "conv feature dim", "ImageNet weights file"]))
    if what in (None, "sweeps"):
        from dmlbench.presets import list_presets

        rows = [[name, desc] for name, desc in list_presets()]
        sections.append("Sweep presets (dmlbench sweep <name>)\n" + tabulate(rows, headers=["name", "description"]))
    if what in (None, "tunes"):
        from dmlbench.presets import list_presets
        from dmlbench.tune.spec import PRESET_DIR as TUNE_PRESETS

        rows = [[name, desc] for name, desc in list_presets(TUNE_PRESETS)]
        sections.append("Tune presets (dmlbench tune <name>)\n" + tabulate(rows, headers=["name", "description"]))
    return "\n\n".join(sections)
