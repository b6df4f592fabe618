"""Dataset registry: `@DATASETS.register(name)` on a `load(root, **options) -> DatasetIndex` function."""

from __future__ import annotations

from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.registry import Registry

DATASETS: Registry = Registry("dataset")

__all__ = ["DATASETS", "DatasetError", "DatasetIndex"]

# Loaders register themselves on import (after DATASETS exists).
from dmlbench.data import cub, inshop, sop, synthshop  # noqa: E402, F401
