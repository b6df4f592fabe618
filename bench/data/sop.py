"""Stanford Online Products, read as ``Stanford_Online_Products.zip`` unpacks.

``Ebay_train.txt`` / ``Ebay_test.txt``: a header line ``image_id class_id super_class_id path``, then
one row per image; paths are relative to the dataset root (``bicycle_final/111085122871_0.JPG``).
Train and test classes are disjoint; evaluation is leave-one-out over the test images.

SOP has no attribute annotations. Its 12 super-classes (bicycle, cabinet, ...) serve as a coarse
one-hot attribute vector so attribute-aware losses (SBDL) can run here too; this is documented in
the index notes, and the attribute names are the super-class folder names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmlbench.data import DATASETS
from dmlbench.data.base import DatasetError, DatasetIndex, Protocol
from dmlbench.data.splits import build_index
from dmlbench.data.textfiles import REEXTRACT, parse_int, read_text, split_rows

PROTOCOL: Protocol = "leave-one-out"
KS = (1, 10, 100, 1000)
HEADER = ["image_id", "class_id", "super_class_id", "path"]
OFFICIAL = {"train": (59_551, 11_318), "test": (60_502, 11_316)}  # images, classes
FILES = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}


def find_sop_root(root: Path) -> Path:
    if (root / FILES["train"]).is_file():
        return root
    if (root / "Stanford_Online_Products" / FILES["train"]).is_file():
        return root / "Stanford_Online_Products"
    raise DatasetError(
        f"sop: no {FILES['train']} in {root} or {root / 'Stanford_Online_Products'}; the root must be the "
        "unpacked Stanford_Online_Products folder"
    )


def super_class_name(path: str) -> str:
    """``bicycle_final/111085122871_0.JPG`` -> ``bicycle``.

    >>> super_class_name("coffee_maker_final/371344103996_3.JPG")
    'coffee_maker'
    """
    folder = path.split("/", 1)[0]
    return folder[: -len("_final")] if folder.endswith("_final") else folder


def read_ebay_list(path: Path, rel: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, class ids, super-class ids) of one Ebay_*.txt file."""
    rows = split_rows(read_text(path))
    if not rows:
        raise DatasetError(f"{rel} is empty; {REEXTRACT}")
    header_line, header = rows[0]
    if header != HEADER:
        raise DatasetError(
            f"{rel} line {header_line}: expected the header '{' '.join(HEADER)}', found '{' '.join(header)[:80]}'; "
            f"{REEXTRACT}"
        )
    paths: list[str] = []
    classes = np.empty(len(rows) - 1, dtype=np.int64)
    supers = np.empty(len(rows) - 1, dtype=np.int64)
    for k, (n, tokens) in enumerate(rows[1:]):
        if len(tokens) != 4:
            raise DatasetError(f"{rel} line {n}: expected 4 columns ({' '.join(HEADER)}), found {len(tokens)}; {REEXTRACT}")
        parse_int(tokens[0], rel, n, "image_id")
        classes[k] = parse_int(tokens[1], rel, n, "class_id")
        supers[k] = parse_int(tokens[2], rel, n, "super_class_id")
        paths.append(tokens[3])
    return paths, classes, supers


@DATASETS.register("sop")
def load_sop(
    root: str | Path,
    *,
    val_classes: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    super_class_attributes: bool = True,
) -> DatasetIndex:
    """SOP index; no image is opened. ``super_class_attributes``: the super-class as a one-hot attribute.

    The SOP report's setting (3,000 train / 3,000 test images) is ``data.subset=3000``.
    """
    sop = find_sop_root(Path(root))
    parts = {split: read_ebay_list(sop / rel, rel) for split, rel in FILES.items()}
    notes: list[str] = []
    train_cls, test_cls = set(parts["train"][1].tolist()), set(parts["test"][1].tolist())
    if train_cls & test_cls:
        raise DatasetError(f"sop: {len(train_cls & test_cls)} class ids occur in both Ebay_train.txt and Ebay_test.txt; {REEXTRACT}")
    counts = {s: (len(p[0]), len(np.unique(p[1]))) for s, p in parts.items()}
    if all(counts[s][0] == OFFICIAL[s][0] for s in OFFICIAL):
        differ = [f"{s}: {counts[s][1]} classes (official {OFFICIAL[s][1]})" for s in OFFICIAL if counts[s] != OFFICIAL[s]]
        if differ:
            raise DatasetError(f"sop: full image lists but {'; '.join(differ)}; {REEXTRACT}")
    else:
        notes.append(
            "partial SOP: "
            + ", ".join(f"{s} {counts[s][0]} images (official {OFFICIAL[s][0]})" for s in OFFICIAL)
            + "; counts not asserted"
        )

    paths = parts["train"][0] + parts["test"][0]
    labels = np.concatenate([parts["train"][1], parts["test"][1]])
    supers = np.concatenate([parts["train"][2], parts["test"][2]])
    splits = np.array(["train"] * counts["train"][0] + ["test"] * counts["test"][0], dtype=object)

    # Super-class ids -> 0..S-1 (the groups), named after their folders.
    super_ids = np.unique(supers)
    names_by_id: dict[int, str] = {}
    for sid, path in zip(supers.tolist(), paths, strict=True):
        names_by_id.setdefault(sid, super_class_name(path))
    groups = np.searchsorted(super_ids, supers).astype(np.int64)

    attributes = attribute_names = None
    if super_class_attributes:
        attributes = np.zeros((len(paths), len(super_ids)), dtype=np.float32)
        attributes[np.arange(len(paths)), groups] = 1.0
        attribute_names = [names_by_id[int(s)] for s in super_ids]
        notes.append(
            f"attributes = one-hot super-class ({len(super_ids)} coarse categories), not annotated attributes"
        )
    return build_index(
        name="sop",
        root=sop,
        paths=paths,
        labels=labels,
        splits=splits,
        protocol=PROTOCOL,
        ks=KS,
        attributes=attributes,
        attribute_names=attribute_names,
        groups=groups,
        notes=notes,
        val_classes=val_classes,
        subset=subset,
        seed=seed,
    )
