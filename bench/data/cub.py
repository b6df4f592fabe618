"""CUB-200-2011 for metric learning, read as ``CUB_200_2011.tgz`` unpacks.

Files under ``CUB_200_2011/``: ``images.txt`` (``<image_id> <path>``), ``image_class_labels.txt``,
``classes.txt``, ``bounding_boxes.txt`` (``<image_id> x y w h``), ``images/`` and optionally
``attributes/image_attribute_labels.txt`` (``<image_id> <attribute_id> <is_present> <certainty_id>
<time>``). ``attributes.txt`` (the 312 names) sits *next to* ``CUB_200_2011/`` in the archive.

DML split (not ``train_test_split.txt``, which is the classification split): classes 1-100 train,
101-200 test, leave-one-out retrieval over the test images.

The real ``image_attribute_labels.txt`` has several hundred rows with one extra token (6 columns).
They are repaired, not dropped: ``is_present`` is column 3 and ``certainty`` is the non-zero one of
columns 4-5 (the extra token is a 0 next to the certainty), and the number repaired is noted.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from dmlbench.data import DATASETS
from dmlbench.data.base import DatasetError, DatasetIndex, Protocol
from dmlbench.data.splits import build_index
from dmlbench.data.textfiles import REEXTRACT, parse_float, parse_int, parse_table, read_text

PROTOCOL: Protocol = "leave-one-out"
KS = (1, 2, 4, 8, 16, 32)
NUM_CLASSES = 200
NUM_ATTRIBUTES = 312
CERTAINTIES = {1: "not visible", 2: "guessing", 3: "probably", 4: "definitely"}
OFFICIAL_IMAGES = 11_788
OFFICIAL_TRAIN_IMAGES = 5_864
OFFICIAL_TEST_IMAGES = 5_924


def find_cub_root(root: Path) -> Path:
    """Accept the ``CUB_200_2011`` folder itself or the folder it was unpacked into."""
    if (root / "images.txt").is_file():
        return root
    if (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    raise DatasetError(
        f"cub: no images.txt in {root} or {root / 'CUB_200_2011'}; the root must be the unpacked "
        "CUB_200_2011 folder (or its parent)"
    )


def read_id_map(path: Path, rel: str, what: str) -> dict[int, tuple[int, list[str]]]:
    """``<id> <value...>`` -> {id: (line, values)}; ids must be unique."""
    out: dict[int, tuple[int, list[str]]] = {}
    for n, tokens in parse_table(read_text(path), rel, min_tokens=2):
        key = parse_int(tokens[0], rel, n, what)
        if key in out:
            raise DatasetError(f"{rel} line {n}: {what} {key} appears twice (first on line {out[key][0]}); {REEXTRACT}")
        out[key] = (n, tokens[1:])
    return out


def find_attribute_names(cub: Path) -> list[str] | None:
    for path in (cub.parent / "attributes.txt", cub / "attributes" / "attributes.txt", cub / "attributes.txt"):
        if path.is_file():
            names = read_id_map(path, path.name, "attribute id")
            if sorted(names) != list(range(1, len(names) + 1)):
                raise DatasetError(f"{path}: attribute ids must run 1..{len(names)}; {REEXTRACT}")
            return [" ".join(names[k][1]) for k in range(1, len(names) + 1)]
    return None


def _raw_line(path: Path, row: int) -> str:
    """The text of 0-based data row `row` (blank lines skipped, as pandas does), for error messages."""
    with path.open() as f:
        rows = (line for line in f if line.strip())
        return next(itertools.islice(rows, row, None), "").strip()[:80]


def parse_image_attributes(
    path: Path, image_ids: np.ndarray, min_certainty: int
) -> tuple[np.ndarray, int, list[str]]:
    """(N, 312) {0,1}: present with certainty >= min_certainty; the number of repaired 6-column rows; notes.

    Uses pandas' C parser as float64 columns: the real file has 3.7 million rows.
    """
    import pandas as pd

    rel = "attributes/image_attribute_labels.txt"
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=list(range(6)), dtype=np.float64, engine="c")
    except pd.errors.ParserError as err:
        raise DatasetError(f"{rel}: {err}; rows must have 5 columns (6 in the known malformed rows) - {REEXTRACT}") from None
    except ValueError as err:  # a non-numeric token somewhere
        raise DatasetError(f"{rel}: {err}; every column must be a number - {REEXTRACT}") from None
    values = table.to_numpy()
    width = (~np.isnan(values)).sum(axis=1)
    # A NaN inside the first five columns can only mean a short row (or a literal 'nan' token).
    short = np.flatnonzero(np.isnan(values[:, :5]).any(axis=1))
    if len(short):
        r = int(short[0])
        raise DatasetError(f"{rel} line {r + 1}: expected 5 columns, found {width[r]} ('{_raw_line(path, r)}'); {REEXTRACT}")
    image_id = values[:, 0].astype(np.int64)
    attr_id = values[:, 1].astype(np.int64)
    present = values[:, 2].astype(np.int64)
    certainty = values[:, 3].astype(np.int64)
    malformed = width == 6
    if malformed.any():
        # Columns 4-5 hold the certainty and an extra 0 (in either order); column 6 is the time.
        col4, col5 = values[malformed, 3], values[malformed, 4]
        extra_first = (col4 == 0) & (col5 >= 1) & (col5 <= 4)
        certainty[malformed] = np.where(extra_first, col5, col4).astype(np.int64)
    bad_rows = np.flatnonzero((present != 0) & (present != 1) | (certainty < 1) | (certainty > 4))
    if len(bad_rows):
        r = int(bad_rows[0])
        raise DatasetError(
            f"{rel} line {r + 1}: is_present must be 0/1 and certainty 1-4, found '{_raw_line(path, r)}'; {REEXTRACT}"
        )
    if attr_id.min() < 1 or attr_id.max() > NUM_ATTRIBUTES:
        r = int(np.flatnonzero((attr_id < 1) | (attr_id > NUM_ATTRIBUTES))[0])
        raise DatasetError(f"{rel} line {r + 1}: attribute id {attr_id[r]} outside 1..{NUM_ATTRIBUTES}; {REEXTRACT}")

    # Row of each image id in the index (image_ids is sorted); ids not in images.txt are ignored.
    pos = np.clip(np.searchsorted(image_ids, image_id), 0, len(image_ids) - 1)
    used = image_ids[pos] == image_id
    out = np.zeros((len(image_ids), NUM_ATTRIBUTES), dtype=np.float32)
    seen = np.zeros(out.shape, dtype=bool)
    on = used & (present == 1) & (certainty >= min_certainty)
    out[pos[on], attr_id[on] - 1] = 1.0
    seen[pos[used], attr_id[used] - 1] = True
    notes = []
    n_bad = int(malformed.sum())
    if n_bad:
        notes.append(f"{rel}: repaired {n_bad} malformed rows with an extra column")
    unlabeled = int((~seen).sum())
    if unlabeled:
        notes.append(f"{rel}: {unlabeled} image/attribute pairs have no row (treated as absent)")
    if min_certainty > 1:
        notes.append(f"attributes count as present only with certainty >= {min_certainty} ({CERTAINTIES[min_certainty]})")
    return out, n_bad, notes


@DATASETS.register("cub")
def load_cub(
    root: str | Path,
    *,
    val_classes: float = 0.0,
    subset: int | None = None,
    seed: int = 0,
    train_classes: int = 100,
    crop_bboxes: bool = False,
    attributes: bool = True,
    min_certainty: int = 1,
) -> DatasetIndex:
    """CUB-200-2011 index; no image is opened.

    Options: ``train_classes`` (classes 1..N train, the rest test; 100 is the standard split - change
    it only for partial copies such as a 10-class sample), ``crop_bboxes`` (crop to
    ``bounding_boxes.txt``), ``attributes`` (load the 312 per-image attributes when the file exists),
    ``min_certainty`` (1 not visible .. 4 definitely: a present label counts only at this certainty or above).
    """
    cub = find_cub_root(Path(root))
    if min_certainty not in CERTAINTIES:
        raise DatasetError(f"cub option min_certainty must be 1-4 ({CERTAINTIES}), got {min_certainty}")

    images = read_id_map(cub / "images.txt", "images.txt", "image id")
    for n, rest in images.values():
        if len(rest) != 1:
            raise DatasetError(f"images.txt line {n}: expected '<image_id> <path>', found {len(rest) + 1} columns; {REEXTRACT}")
    class_of = read_id_map(cub / "image_class_labels.txt", "image_class_labels.txt", "image id")
    classes = read_id_map(cub / "classes.txt", "classes.txt", "class id")

    image_ids = np.array(sorted(images), dtype=np.int64)
    paths = ["images/" + images[i][1][0] for i in image_ids.tolist()]
    labels = np.empty(len(image_ids), dtype=np.int64)
    for k, i in enumerate(image_ids.tolist()):
        if i not in class_of:
            raise DatasetError(f"image_class_labels.txt has no class for image id {i} (images.txt line {images[i][0]}); {REEXTRACT}")
        line, (cls_token, *_) = class_of[i]
        labels[k] = parse_int(cls_token, "image_class_labels.txt", line, "class id")
        if labels[k] not in classes:
            raise DatasetError(f"image_class_labels.txt line {line}: class {labels[k]} is not in classes.txt; {REEXTRACT}")

    notes: list[str] = []
    extra = len(set(class_of) - set(images))
    if extra:
        notes.append(f"image_class_labels.txt lists {extra} image ids that images.txt does not (ignored)")
    if not 1 <= train_classes < NUM_CLASSES:
        raise DatasetError(f"cub option train_classes must be in 1..{NUM_CLASSES - 1}, got {train_classes}")
    splits = np.where(labels <= train_classes, "train", "test").astype(object)
    if not (splits == "test").any():
        raise DatasetError(
            f"cub: all {len(labels)} images belong to classes 1-{train_classes} (the training classes), so there "
            f"is no test split; for a partial copy such as a 10-class sample set data.options.train_classes "
            f"(e.g. {max(1, int(labels.max()) // 2)})"
        )
    if train_classes != 100:
        notes.append(f"NON-STANDARD split: classes 1-{train_classes} train, {train_classes + 1}-{NUM_CLASSES} test")
    if len(image_ids) == OFFICIAL_IMAGES and train_classes == 100:
        n_train, n_test = int((splits == "train").sum()), int((splits == "test").sum())
        if (n_train, n_test) != (OFFICIAL_TRAIN_IMAGES, OFFICIAL_TEST_IMAGES):
            raise DatasetError(
                f"cub: full images.txt but {n_train} train / {n_test} test images (official "
                f"{OFFICIAL_TRAIN_IMAGES} / {OFFICIAL_TEST_IMAGES}); check image_class_labels.txt - {REEXTRACT}"
            )
    elif len(image_ids) != OFFICIAL_IMAGES:
        notes.append(f"partial CUB: {len(image_ids)} images in images.txt (official {OFFICIAL_IMAGES}), counts not asserted")

    bboxes = None
    if crop_bboxes:
        boxes = read_id_map(cub / "bounding_boxes.txt", "bounding_boxes.txt", "image id")
        bboxes = np.empty((len(image_ids), 4), dtype=np.float32)
        for k, i in enumerate(image_ids.tolist()):
            if i not in boxes:
                raise DatasetError(f"bounding_boxes.txt has no box for image id {i}; {REEXTRACT}")
            line, values = boxes[i]
            if len(values) != 4:
                raise DatasetError(f"bounding_boxes.txt line {line}: expected '<image_id> x y w h'; {REEXTRACT}")
            bboxes[k] = [parse_float(v, "bounding_boxes.txt", line, "box coordinate") for v in values]
        notes.append("images cropped to bounding_boxes.txt")

    attr_matrix = attr_names = None
    attr_file = cub / "attributes" / "image_attribute_labels.txt"
    if attributes and attr_file.is_file():
        attr_matrix, _, attr_notes = parse_image_attributes(attr_file, image_ids, min_certainty)
        notes += attr_notes
        attr_names = find_attribute_names(cub)
        if attr_names is None:
            attr_names = [f"attr_{k + 1}" for k in range(NUM_ATTRIBUTES)]
            notes.append("attributes.txt (next to CUB_200_2011/) not found: attribute names are attr_1..attr_312")
        elif len(attr_names) != NUM_ATTRIBUTES:
            raise DatasetError(f"attributes.txt has {len(attr_names)} names, expected {NUM_ATTRIBUTES}; {REEXTRACT}")
    elif attributes:
        notes.append("attributes/image_attribute_labels.txt not found: no attributes")

    return build_index(
        name="cub",
        root=cub,
        paths=paths,
        labels=labels,
        splits=splits,
        protocol=PROTOCOL,
        ks=KS,
        attributes=attr_matrix,
        attribute_names=attr_names,
        bboxes=bboxes,
        notes=notes,
        val_classes=val_classes,
        subset=subset,
        seed=seed,
    )
