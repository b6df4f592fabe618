"""DeepFashion In-shop Clothes Retrieval, read exactly as the official archive unpacks.

Files (relative to the dataset root):
- ``Eval/list_eval_partition.txt`` (required): count line, header line, then padded columns
  ``<image_name> <item_id> <evaluation_status>``; image names start with ``img/``.
- ``img/`` (256x256 images) or ``img_highres/``; ``Img/img/`` is accepted too.
- ``Anno/list_attr_items.txt`` (optional): count, header, ``<item_id> <463 x +-1>``; per image the
  item's vector mapped to {0, 1}.
- ``Anno/list_attr_cloth.txt`` or ``Anno/attributes/list_attr_cloth.txt``: attribute names.
- ``Anno/list_bbox_inshop.txt`` (optional): used only with ``crop_bboxes``.

Label = item id (``id_00000001`` -> 1), never the category folder: 99 items sit under two folders
(e.g. a WOMEN and a MEN folder). ``groups`` = the category folder (``WOMEN/Dresses``); for an item
under two folders, the alphabetically first one, so every image of an item has one group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmlbench.data import DATASETS
from dmlbench.data.base import DatasetError, DatasetIndex, Protocol
from dmlbench.data.splits import build_index
from dmlbench.data.textfiles import REEXTRACT, parse_counted_table, parse_int, read_text

PROTOCOL: Protocol = "query-gallery"
KS = (1, 10, 20, 30, 40, 50)
STATUSES = ("train", "query", "gallery")
# Official counts (DESIGN.md), asserted when the partition file has the full 52,712 rows.
OFFICIAL_IMAGES = 52_712
OFFICIAL_SPLIT_IMAGES = {"train": 25_882, "query": 14_218, "gallery": 12_612}
OFFICIAL_TRAIN_ITEMS = 3_997
OFFICIAL_EVAL_ITEMS = 3_985
IMAGE_DIRS = ("img", "img_highres", "Img/img", "Img/img_highres")


def item_number(item_id: str, name: str, line: int) -> int:
    """``id_00000042`` -> 42.

    >>> item_number("id_00000042", "p.txt", 3)
    42
    """
    digits = item_id.rsplit("_", 1)[-1]
    if not digits.isdigit():
        raise DatasetError(f"{name} line {line}: item id '{item_id}' does not look like id_00000001; {REEXTRACT}")
    return int(digits)


def category_of(image_name: str) -> str:
    """``img/WOMEN/Dresses/id_00000002/02_1_front.jpg`` -> ``WOMEN/Dresses``.

    >>> category_of("img/WOMEN/Dresses/id_00000002/02_1_front.jpg")
    'WOMEN/Dresses'
    """
    parts = image_name.split("/")
    return "/".join(parts[1:3]) if len(parts) >= 5 else "/".join(parts[:-2]) or "?"


def resolve_image_dir(root: Path, image_dir: str) -> str:
    """The folder that replaces the partition file's leading ``img/``."""
    if image_dir != "auto":
        if image_dir not in IMAGE_DIRS:
            raise DatasetError(f"inshop option image_dir must be auto or one of {IMAGE_DIRS}, got '{image_dir}'")
        return image_dir
    for candidate in IMAGE_DIRS:
        if (root / candidate).is_dir():
            return candidate
    return "img"  # nothing unpacked yet: the image check reports the missing files


def read_attribute_names(root: Path) -> list[str] | None:
    for rel in ("Anno/list_attr_cloth.txt", "Anno/attributes/list_attr_cloth.txt"):
        path = root / rel
        if path.is_file():
            header, rows = parse_counted_table(
                read_text(path), rel, header_first="attribute_name", min_tokens=1
            )
            typed = len(header) >= 2  # the Category-and-Attribute variant adds an attribute_type column
            return [" ".join(tokens[:-1] if typed and len(tokens) > 1 else tokens) for _, tokens in rows]
    return None


def find_attr_items(root: Path) -> Path | None:
    for rel in ("Anno/list_attr_items.txt", "Anno/attributes/list_attr_items.txt"):
        if (root / rel).is_file():
            return root / rel
    return None


def read_item_attributes(path: Path, rel: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """item id -> {0,1} vector. Identical duplicate rows are tolerated (and noted), conflicting ones are not."""
    _, rows = parse_counted_table(read_text(path), rel, header_first=None, min_tokens=2)
    width = len(rows[0][1]) - 1 if rows else 0
    vectors: dict[str, np.ndarray] = {}
    duplicates = 0
    for n, tokens in rows:
        if len(tokens) - 1 != width:
            raise DatasetError(
                f"{rel} line {n}: {len(tokens) - 1} attribute values, the first row has {width}; {REEXTRACT}"
            )
        values = tokens[1:]
        bad = next((v for v in values if v not in ("1", "-1", "0")), None)
        if bad is not None:
            raise DatasetError(f"{rel} line {n}: attribute values must be 1 or -1, found '{bad}'; {REEXTRACT}")
        vec = np.array([v == "1" for v in values], dtype=np.float32)
        item = tokens[0]
        if item in vectors:
            if not np.array_equal(vectors[item], vec):
                raise DatasetError(f"{rel} line {n}: item {item} appears twice with different attributes; {REEXTRACT}")
            duplicates += 1
            continue
        vectors[item] = vec
    notes = [f"{rel}: {duplicates} duplicate item rows (identical) ignored"] if duplicates else []
    return vectors, notes


def read_bboxes(path: Path, rel: str, image_names: list[str]) -> np.ndarray:
    """(N, 4) x, y, w, h per partition image; NaN for an image without a box (left uncropped)."""
    _, rows = parse_counted_table(read_text(path), rel, header_first="image_name", min_tokens=7, max_tokens=7)
    by_name: dict[str, tuple[float, float, float, float]] = {}
    for n, tokens in rows:
        x1, y1, x2, y2 = (parse_int(t, rel, n, "bbox coordinate") for t in tokens[3:7])
        by_name[tokens[0]] = (x1, y1, x2 - x1, y2 - y1)
    boxes = np.full((len(image_names), 4), np.nan, dtype=np.float32)
    for i, name in enumerate(image_names):
        if name in by_name:
            boxes[i] = by_name[name]
    return boxes


def check_official_counts(splits: np.ndarray, labels: np.ndarray) -> None:
    """On the full partition file, every official count must hold; say which one does not."""
    problems = []
    for split, want in OFFICIAL_SPLIT_IMAGES.items():
        got = int((splits == split).sum())
        if got != want:
            problems.append(f"{split} images {got} (official {want})")
    train_items = len(np.unique(labels[splits == "train"]))
    eval_items = len(np.unique(labels[np.isin(splits, ("query", "gallery"))]))
    if train_items != OFFICIAL_TRAIN_ITEMS:
        problems.append(f"train items {train_items} (official {OFFICIAL_TRAIN_ITEMS})")
    if eval_items != OFFICIAL_EVAL_ITEMS:
        problems.append(f"query/gallery items {eval_items} (official {OFFICIAL_EVAL_ITEMS})")
    if problems:
        raise DatasetError(
            "Eval/list_eval_partition.txt has the full 52,712 rows but differs from the official split: "
            + "; ".join(problems)
            + f"; {REEXTRACT}"
        )


@DATASETS.register("inshop")
def load_inshop(
    root: str | Path,
    *,
    val_classes: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    image_dir: str = "auto",
    attributes: bool = True,
    crop_bboxes: bool = False,
) -> DatasetIndex:
    """DeepFashion In-Shop (see `read_inshop` for the files and options)."""
    return read_inshop(
        root,
        val_classes=val_classes,
        subset=subset,
        seed=seed,
        image_dir=image_dir,
        attributes=attributes,
        crop_bboxes=crop_bboxes,
    )


def read_inshop(
    root: str | Path,
    *,
    val_classes: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    image_dir: str = "auto",
    attributes: bool = True,
    crop_bboxes: bool = False,
    name: str = "inshop",
) -> DatasetIndex:
    """In-Shop index from ``Eval/list_eval_partition.txt``; no image is opened.

    Options: ``image_dir`` (auto | img | img_highres | Img/img | Img/img_highres), ``attributes``
    (load the 463 item attributes when the files exist), ``crop_bboxes`` (crop images to
    ``Anno/list_bbox_inshop.txt``), ``name`` (the index name; synthshop reuses this loader).
    """
    root = Path(root)
    rel = "Eval/list_eval_partition.txt"
    if not (root / rel).is_file():
        raise DatasetError(
            f"{name}: {root / rel} not found; the dataset root must be the folder that holds Eval/, Anno/ and img/"
        )
    _, rows = parse_counted_table(
        read_text(root / rel), rel, header_first="image_name", min_tokens=3, max_tokens=3
    )
    image_names: list[str] = []
    item_ids: list[str] = []
    labels = np.empty(len(rows), dtype=np.int64)
    splits = np.empty(len(rows), dtype=object)
    for i, (n, (image_name, item_id, status)) in enumerate(rows):
        if status not in STATUSES:
            raise DatasetError(f"{rel} line {n}: evaluation status must be one of {STATUSES}, found '{status}'; {REEXTRACT}")
        image_names.append(image_name)
        item_ids.append(item_id)
        labels[i] = item_number(item_id, rel, n)
        splits[i] = status
    if len(set(image_names)) != len(image_names):
        raise DatasetError(f"{rel}: some image names appear more than once; {REEXTRACT}")

    train_items = set(labels[splits == "train"].tolist())
    eval_items = set(labels[splits != "train"].tolist())
    if train_items & eval_items:
        shared = sorted(train_items & eval_items)
        raise DatasetError(
            f"{rel}: {len(shared)} items are in both train and query/gallery (e.g. id {shared[0]}); "
            f"the protocol needs disjoint items - {REEXTRACT}"
        )
    if name == "inshop" and len(rows) == OFFICIAL_IMAGES:
        check_official_counts(splits, labels)

    notes: list[str] = []
    if name == "inshop" and len(rows) != OFFICIAL_IMAGES:
        notes.append(f"{len(rows)} partition rows; the official In-Shop has {OFFICIAL_IMAGES} (counts not asserted)")

    # Category folder per item: alphabetically first when an item sits under two folders.
    item_folders: dict[int, set[str]] = {}
    for label, image_name in zip(labels.tolist(), image_names, strict=True):
        item_folders.setdefault(label, set()).add(category_of(image_name))
    two_folder_items = sum(len(f) > 1 for f in item_folders.values())
    if two_folder_items:
        notes.append(
            f"{two_folder_items} items appear under two category folders; label = item id, "
            "group = their alphabetically first folder"
        )
    category_names = sorted({min(f) for f in item_folders.values()})
    category_id = {c: i for i, c in enumerate(category_names)}
    groups = np.array([category_id[min(item_folders[label])] for label in labels.tolist()], dtype=np.int64)

    folder = resolve_image_dir(root, image_dir)
    paths = [folder + name_[3:] if name_.startswith("img/") else name_ for name_ in image_names]

    attr_matrix: np.ndarray | None = None
    attr_names: list[str] | None = None
    attr_path = find_attr_items(root) if attributes else None
    if attr_path is not None:
        attr_rel = str(attr_path.relative_to(root))
        vectors, attr_notes = read_item_attributes(attr_path, attr_rel)
        notes += attr_notes
        missing = sorted(set(item_ids) - set(vectors))
        if missing:
            raise DatasetError(
                f"{attr_rel} has no row for {len(missing)} items of the partition (e.g. {missing[0]}); "
                f"{REEXTRACT}, or set data.options.attributes=false"
            )
        attr_matrix = np.stack([vectors[item] for item in item_ids])
        attr_names = read_attribute_names(root)
        if attr_names is None:
            attr_names = [f"attr_{k}" for k in range(attr_matrix.shape[1])]
            notes.append("Anno/list_attr_cloth.txt not found: attribute names are attr_0, attr_1, ...")
        elif len(attr_names) != attr_matrix.shape[1]:
            raise DatasetError(
                f"list_attr_cloth.txt names {len(attr_names)} attributes but {attr_rel} has "
                f"{attr_matrix.shape[1]} values per item; the two files come from different releases"
            )
    elif attributes:
        notes.append("Anno/list_attr_items.txt not found: no attributes (attribute-aware losses cannot run)")

    bboxes: np.ndarray | None = None
    if crop_bboxes:
        bbox_rel = "Anno/list_bbox_inshop.txt"
        if not (root / bbox_rel).is_file():
            raise DatasetError(f"{name}: crop_bboxes is set but {root / bbox_rel} is missing")
        bboxes = read_bboxes(root / bbox_rel, bbox_rel, image_names)
        without = int(np.isnan(bboxes[:, 0]).sum())
        if without:
            notes.append(f"{bbox_rel}: {without} images have no box and are used uncropped")

    return build_index(
        name=name,
        root=root,
        paths=paths,
        labels=labels,
        splits=splits,
        protocol=PROTOCOL,
        ks=KS,
        attributes=attr_matrix,
        attribute_names=attr_names,
        groups=groups,
        bboxes=bboxes,
        notes=notes,
        val_classes=val_classes,
        subset=subset,
        seed=seed,
    )
