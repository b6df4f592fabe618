"""`dmlbench list`: every registry entry with its parameters and defaults."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate

from dmlbench.extras import EXTRAS, install_hint, is_installed

KINDS = ("losses", "samplers", "datasets", "backbones", "sweeps", "tunes", "extras")


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
        rows = [_backbone_row(name, BACKBONES.get(name)) for name in BACKBONES]
        rows.append(_timm_row())
        sections.append("Backbones\n" + tabulate(rows, headers=["name", "conv feature dim", "ImageNet weights file"]))
    if what in (None, "sweeps"):
        from dmlbench.presets import list_presets

        rows = [[name, desc] for name, desc in list_presets()]
        sections.append("Sweep presets (dmlbench sweep <name>)\n" + tabulate(rows, headers=["name", "description"]))
    if what in (None, "tunes"):
        from dmlbench.presets import list_presets
        from dmlbench.tune import PRESET_DIR as TUNE_PRESETS

        rows = [[name, desc] for name, desc in list_presets(TUNE_PRESETS)]
        needs = "" if is_installed("tune") else f" -- needs the extra tune: {install_hint('tune')}"
        sections.append(f"Tune presets (dmlbench tune <name>){needs}\n" + tabulate(rows, headers=["name", "description"]))
    if what in (None, "extras"):
        sections.append(describe_extras())
    return "\n\n".join(sections)


def _backbone_row(name: str, spec: Any) -> list[object]:
    extra = next((e for e, x in EXTRAS.items() if spec.requires and x.modules == spec.requires), None)
    missing = f" (not installed: {install_hint(extra)})" if extra and not is_installed(extra) else ""
    return [name + missing, spec.feature_dim, spec.weights_file]


def _timm_row() -> list[object]:
    """`timm/<name>`: how many models timm offers, or the extra that brings them."""
    if not is_installed("timm"):
        return [f"timm/<name> (not installed: {install_hint('timm')})", "-", "Hugging Face cache"]
    import timm

    count = len(timm.list_models())
    return [f"timm/<name>: any of {count} timm.list_models(), e.g. timm/vit_small_patch16_224.dino", "from the model",
            "Hugging Face cache (dmlbench weights fetch timm/<name>)"]


def describe_extras() -> str:
    """The optional extras and whether each is installed here (a plain install has none)."""
    rows = [[name, "yes" if is_installed(name) else f"no: {install_hint(name)}", extra.provides]
            for name, extra in EXTRAS.items()]
    return "Optional extras\n" + tabulate(rows, headers=["extra", "installed", "needed for"])
