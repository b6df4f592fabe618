"""The dataset contract: an index built from annotation files, checked when it is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmlbench.config.schema import Protocol
from dmlbench.errors import DatasetError

SPLITS = ("train", "val", "query", "gallery", "test")


@dataclass
class DatasetIndex:
    """Everything about a dataset except pixels. Images are decoded lazily from `root / paths[i]`.

    - ``labels``: class id per image (In-Shop: item id, never the category folder).
    - ``splits``: one of SPLITS per image. Training uses "train"; evaluation uses "query"+"gallery"
      (protocol "query-gallery") or "test" (protocol "leave-one-out"); "val" is carved from the
      training classes and never overlaps the test classes.
    - ``attributes``: (N, K) float32 in [0, 1] per image, or None when the dataset has none.
    - ``groups``: coarse category per image (clothing type, SOP super-class, ...) or None.
    - ``galleries``: protocol "query-gallery" only, or None (one gallery): an evaluation group per
      image; each query is ranked against the gallery images of its own group, so a test set of many
      items is scored as several retrieval tasks of fewer items each (synthshop's ``large``: more
      queries at the difficulty of a smaller gallery). Metrics are means over all queries.
    - ``ks``: the standard K list of the dataset's protocol.
    - ``notes``: facts a reader of the results must know (a subset was used, rows repaired, ...).
    """

    name: str
    root: Path
    paths: list[str]
    labels: np.ndarray
    splits: np.ndarray
    protocol: Protocol
    ks: tuple[int, ...]
    attributes: np.ndarray | None = None
    attribute_names: list[str] | None = None
    groups: np.ndarray | None = None
    galleries: np.ndarray | None = None
    bboxes: np.ndarray | None = None  # (N, 4) x, y, w, h in pixels, or None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.splits = np.asarray(self.splits, dtype=object)
        self.validate()

    def __len__(self) -> int:
        return len(self.paths)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    @property
    def num_attributes(self) -> int:
        return 0 if self.attributes is None else int(self.attributes.shape[1])

    def validate(self) -> None:
        n = len(self.paths)
        if len(self.labels) != n or len(self.splits) != n:
            raise DatasetError(f"{self.name}: paths/labels/splits lengths differ ({n}, {len(self.labels)}, {len(self.splits)})")
        bad = sorted(set(self.splits.tolist()) - set(SPLITS))
        if bad:
            raise DatasetError(f"{self.name}: unknown split names {bad}; expected a subset of {SPLITS}")
        for arr, what in ((self.attributes, "attributes"), (self.groups, "groups"), (self.galleries, "galleries"),
                          (self.bboxes, "bboxes")):
            if arr is not None and len(arr) != n:
                raise DatasetError(f"{self.name}: {what} has {len(arr)} rows for {n} images")
        if not (self.splits == "train").any():
            raise DatasetError(f"{self.name}: no training images")
        eval_splits = ("query", "gallery") if self.protocol == "query-gallery" else ("test",)
        for split in eval_splits:
            if not (self.splits == split).any():
                raise DatasetError(f"{self.name}: protocol {self.protocol} needs a '{split}' split, found none")
        train_cls = set(self.labels[self.splits == "train"].tolist())
        val_cls = set(self.labels[self.splits == "val"].tolist())
        if train_cls & val_cls:
            raise DatasetError(f"{self.name}: validation classes overlap training classes")
