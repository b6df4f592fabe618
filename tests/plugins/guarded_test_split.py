"""A dataset whose evaluation images (query, gallery, test) cannot be read: every read of one raises.

`synthshop-guarded` is tiny synthshop with those images' paths pointing into a folder that does not
exist, so any code that opens one (the image check, feature extraction) fails with "missing or
unreadable". A tuning study on it must complete; only the final stage may fail on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmlbench.data import DATASETS, DatasetIndex
from dmlbench.data.synthshop import load_synthshop

NEVER_READ = "EVALUATION-IMAGES-MUST-NOT-BE-READ"


@DATASETS.register("synthshop-guarded")
def load_guarded(root: str | Path, *, val_classes: float = 0.0, subset: int | None = None, seed: int = 0) -> DatasetIndex:
    index = load_synthshop(root, val_classes=val_classes, subset=subset, seed=seed)
    evaluation = np.isin(index.splits, ("query", "gallery", "test"))
    index.paths = [f"{NEVER_READ}/{p}" if hidden else p for p, hidden in zip(index.paths, evaluation, strict=True)]
    index.name = "synthshop-guarded"
    return index
