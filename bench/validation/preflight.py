"""The checks of a run that need no data: registry names and parameters (the fields of
`config.keys.NAME_CHECKED_KEYS`), weights on disk, the device and a C++ compiler for `train.compile` on CPU.

They run before a run folder exists (`dmlbench train`) or for every cell of a sweep (`--dry-run`), so a
typo costs a second, not a trained run. Nothing here imports `dmlbench.train`.
"""

from __future__ import annotations

import os
import shutil

import torch

from dmlbench import losses, samplers
from dmlbench.config import Config, ConfigError
from dmlbench.data import DATASETS, DatasetIndex
from dmlbench.data.splits import validation_view, with_fold
from dmlbench.model import BACKBONES, check_weights
from dmlbench.registry import import_plugins


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def check_names(cfg: Config) -> None:
    """Registry names and their parameters; typos fail here, naming the closest valid name."""
    import_plugins(cfg.plugins)
    # Registry errors are DmlbenchErrors with a clean did-you-mean message; enumerated values
    # (optimizer, amp, compile, layers, ...) were already checked when the config was read.
    losses.LOSSES.check_params(cfg.loss.name, cfg.loss.params)
    samplers.SAMPLERS.check_params(cfg.sampler.name, cfg.sampler.params)
    DATASETS.check_params(cfg.data.dataset, cfg.data.options)
    BACKBONES.get(cfg.model.backbone)


def check_compiler(cfg: Config, device: torch.device) -> None:
    """torch.compile on CPU generates C++: fail before training when no compiler is there to build it."""
    if cfg.train.compile == "off" or device.type != "cpu":
        return
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
        raise ConfigError(
            "train.compile on CPU needs a C++ compiler (g++ or clang++, or $CXX) and none was found: "
            "install one (Debian: apt install g++) or set train.compile=off"
        )


def load_index(cfg: Config) -> DatasetIndex:
    """The run's dataset index (reads the annotation files, not the images)."""
    loader = DATASETS.get(cfg.data.dataset)
    index = loader(cfg.data.root, val_classes=cfg.data.val_classes, subset=cfg.data.subset, seed=cfg.seed, **cfg.data.options)
    if cfg.data.folds:  # tuning: one class-disjoint fold of the training classes is "val"
        index = with_fold(index, cfg.data.folds, cfg.data.fold, cfg.seed)
    if cfg.eval.split == "val":  # evaluated on "val"; the test images are dropped from the index
        index = validation_view(index)
    return index


def preflight(cfg: Config) -> torch.device:
    """The checks that need no data: names, parameters, weights on disk, device, compiler. Returns the device."""
    check_names(cfg)
    check_weights(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights_path)
    device = resolve_device(cfg.train.device)
    check_compiler(cfg, device)
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            "train.amp=fp16 needs a CUDA device (its gradient scaler runs on CUDA); on CPU use train.amp=bf16 or off"
        )
    return device
