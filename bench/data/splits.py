"""Split surgery shared by every loader: deterministic subsets, a validation split from training classes.

Both work on whole classes, so a subset keeps positives for every query it keeps (a random image
subset of SOP would leave most images without a match), and validation never shares a class with
training or test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dmlbench.data.base import SPLITS, DatasetError, DatasetIndex, Protocol

# Which splits a subset counts together: the evaluation images of one protocol share their classes.
SUBSET_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "query-gallery": (("train",), ("query", "gallery")),
    "leave-one-out": (("train",), ("test",)),
}


def subset_mask(labels: np.ndarray, in_group: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Keep `size` images of the group: whole classes in a random order, the last one cut to fit.

    >>> labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    >>> m = subset_mask(labels, np.ones(9, bool), 5, np.random.default_rng(0))
    >>> int(m.sum()), len(set(labels[m].tolist())) <= 3
    (5, True)
    """
    keep = np.zeros(len(labels), dtype=bool)
    members = np.flatnonzero(in_group)
    # Members grouped by class once (stable: each class keeps its file order), then whole classes taken.
    members = members[np.argsort(labels[members], kind="stable")]
    classes, starts, counts = np.unique(labels[members], return_index=True, return_counts=True)
    remaining = size
    for c in rng.permutation(len(classes)):
        if remaining <= 0:
            break
        own = members[starts[c] : starts[c] + min(counts[c], remaining)]
        keep[own] = True
        remaining -= len(own)
    return keep


def take_subset(
    labels: np.ndarray, splits: np.ndarray, protocol: Protocol, size: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Mask of images kept by a `size`-image subset per split group, and notes saying so."""
    if size <= 0:
        raise DatasetError(f"data.subset must be a positive number of images, got {size}")
    rng = np.random.default_rng([seed, 0x5B5E7])
    keep = np.zeros(len(labels), dtype=bool)
    notes: list[str] = []
    for group in SUBSET_GROUPS[protocol]:
        in_group = np.isin(splits, group)
        total = int(in_group.sum())
        if total == 0:
            continue
        if total <= size:
            keep |= in_group
            notes.append(f"subset: asked for {size} {'+'.join(group)} images, all {total} kept")
            continue
        part = subset_mask(labels, in_group, size, rng)
        keep |= part
        n_cls = len(np.unique(labels[part]))
        of_cls = len(np.unique(labels[in_group]))
        notes.append(
            f"SUBSET (not the full benchmark): {int(part.sum())} of {total} {'+'.join(group)} images, "
            f"{n_cls} of {of_cls} classes, seed {seed}"
        )
    return keep, notes


def carve_validation(
    labels: np.ndarray, splits: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Move a `fraction` of the training classes (all their images) to split "val".

    >>> labels = np.repeat(np.arange(10), 2)
    >>> splits = np.array(["train"] * 20, dtype=object)
    >>> new, _ = carve_validation(labels, splits, 0.3, seed=0)
    >>> len(set(labels[new == "val"].tolist())), set(labels[new == "val"].tolist()) & set(labels[new == "train"].tolist())
    (3, set())
    """
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"data.val_classes is a fraction of the training classes in [0, 1), got {fraction}")
    splits = splits.copy()
    if fraction == 0.0:
        return splits, []
    train = splits == "train"
    classes = np.unique(labels[train])
    if len(classes) < 2:
        raise DatasetError(f"cannot carve a validation split from {len(classes)} training class(es)")
    n_val = min(len(classes) - 1, max(1, round(fraction * len(classes))))
    rng = np.random.default_rng([seed, 0x7A1])
    val_classes = rng.choice(classes, size=n_val, replace=False)
    to_val = train & np.isin(labels, val_classes)
    splits[to_val] = "val"
    note = (
        f"validation: {n_val} of {len(classes)} training classes ({int(to_val.sum())} images) held out "
        f"as split 'val', seed {seed}"
    )
    return splits, [note]


def max_folds(num_classes: int) -> int:
    """The most class-disjoint folds `num_classes` training classes allow: two classes per fold, so a
    fold's leave-one-out retrieval has a wrong class to rank against.

    >>> max_folds(10), max_folds(3)
    (5, 1)
    """
    return num_classes // 2


def carve_fold(labels: np.ndarray, splits: np.ndarray, folds: int, fold: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Fold `fold` of `folds` class-disjoint folds of the training classes becomes split "val"; the
    assignment depends only on the training classes and `seed`, so every trial of a study sees the same folds.

    >>> labels = np.repeat(np.arange(6), 2)
    >>> splits = np.array(["train"] * 12, dtype=object)
    >>> vals = [set(labels[carve_fold(labels, splits, 3, f, seed=0)[0] == "val"].tolist()) for f in range(3)]
    >>> [len(v) for v in vals], set().union(*vals) == set(range(6))
    ([2, 2, 2], True)
    """
    classes = np.unique(labels[splits == "train"])
    if folds < 2 or folds > max_folds(len(classes)):
        raise DatasetError(
            f"data.folds={folds}: {len(classes)} training classes allow 2 to {max_folds(len(classes))} folds "
            "(each fold needs at least 2 classes)"
        )
    if not 0 <= fold < folds:
        raise DatasetError(f"data.fold={fold} must be in 0..{folds - 1} (data.folds={folds})")
    order = np.random.default_rng([seed, 0xF01D]).permutation(classes)
    val_classes = np.array_split(order, folds)[fold]
    to_val = (splits == "train") & np.isin(labels, val_classes)
    out = splits.copy()
    out[to_val] = "val"
    note = f"validation fold {fold} of {folds}: {len(val_classes)} of {len(classes)} training classes as split 'val', seed {seed}"
    return out, [note]


def with_fold(index: DatasetIndex, folds: int, fold: int, seed: int) -> DatasetIndex:
    """The index with fold `fold` of its training classes as the validation split (see `carve_fold`)."""
    if (index.splits == "val").any():
        raise DatasetError("data.folds carves the validation split itself: set data.val_classes=0")
    splits, notes = carve_fold(index.labels, index.splits, folds, fold, seed)
    return dataclasses.replace(index, splits=splits, notes=[*index.notes, *notes])


def validation_view(index: DatasetIndex) -> DatasetIndex:
    """Only the training images, the validation split becoming the evaluation split ("test", ranked
    leave-one-out): a tuning run (`eval.split=val`) evaluates on its validation classes, and the
    dataset's own test/query/gallery images are not in its index at all, so no code path can read them.

    >>> labels = np.repeat(np.arange(4), 2)
    >>> splits = np.array(["train"] * 2 + ["val"] * 2 + ["train"] * 2 + ["query", "gallery"], dtype=object)
    >>> view = validation_view(DatasetIndex("d", Path("."), [f"{i}.jpg" for i in range(8)], labels, splits, "query-gallery", (1,)))
    >>> view.paths, view.splits.tolist(), view.protocol
    (['0.jpg', '1.jpg', '2.jpg', '3.jpg', '4.jpg', '5.jpg'], ['train', 'train', 'test', 'test', 'train', 'train'], 'leave-one-out')
    """
    if not (index.splits == "val").any():
        raise DatasetError("eval.split=val needs a validation split: set data.folds and data.fold (or data.val_classes)")
    keep = np.flatnonzero(np.isin(index.splits, ("train", "val")))
    splits = np.where(index.splits[keep] == "val", "test", "train").astype(object)

    def rows(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.asarray(arr)[keep]

    dropped = len(index) - len(keep)
    return dataclasses.replace(
        index,
        paths=[index.paths[i] for i in keep],
        labels=index.labels[keep],
        splits=splits,
        protocol="leave-one-out",
        attributes=rows(index.attributes),
        groups=rows(index.groups),
        bboxes=rows(index.bboxes),
        notes=[*index.notes, f"evaluated on the validation split (leave-one-out); the {dropped} test/query/gallery images are not loaded"],
    )


def build_index(
    *,
    name: str,
    root: Path,
    paths: list[str],
    labels: np.ndarray,
    splits: np.ndarray,
    protocol: Protocol,
    ks: tuple[int, ...],
    attributes: np.ndarray | None = None,
    attribute_names: list[str] | None = None,
    groups: np.ndarray | None = None,
    bboxes: np.ndarray | None = None,
    notes: list[str] | None = None,
    val_classes: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
) -> DatasetIndex:
    """Apply the common options (subset first, then validation from the subset's training classes)."""
    labels = np.asarray(labels, dtype=np.int64)
    splits = np.asarray(splits, dtype=object)
    notes = list(notes or [])
    if subset is not None:
        keep, subset_notes = take_subset(labels, splits, protocol, subset, seed)
        notes += subset_notes
        idx = np.flatnonzero(keep)
        paths = [paths[i] for i in idx]
        labels, splits = labels[idx], splits[idx]
        attributes = None if attributes is None else attributes[idx]
        groups = None if groups is None else np.asarray(groups)[idx]
        bboxes = None if bboxes is None else bboxes[idx]
    splits, val_notes = carve_validation(labels, splits, val_classes, seed)
    notes += val_notes
    return DatasetIndex(
        name=name,
        root=Path(root),
        paths=paths,
        labels=labels,
        splits=splits,
        protocol=protocol,
        ks=ks,
        attributes=attributes,
        attribute_names=attribute_names,
        groups=groups,
        bboxes=bboxes,
        notes=notes,
    )


def split_summary(index: DatasetIndex) -> dict[str, dict[str, int]]:
    """Images and classes per split present in the index."""
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        mask = index.splits == split
        if mask.any():
            out[split] = {"images": int(mask.sum()), "classes": len(np.unique(index.labels[mask]))}
    return out
