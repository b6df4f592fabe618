"""synthshop: a procedurally rendered product dataset, written in the DeepFashion In-Shop format.

Why it exists: every quick start and test needs a retrieval dataset that is small, free, and
exercises the real In-Shop loader. Each *item* (class) is a product with semantic attributes at
several granularities -- category (garment shape; also the ``img/<GENDER>/<Category>/`` folder),
colour family, pattern, accent colour, size class -- plus item-specific fine detail (exact hue,
stripe period/phase/angle, dot grid, logo shape/colour/position, buttons). Each *image* of an item
varies the nuisances (the "spurious attributes"): view (front/side/back/full/zoom-in), rotation,
scale, translation, flip, lighting and colour balance, background gradient and clutter, occluders,
sensor noise and JPEG quality. Same-category/different-item negatives therefore share shape and
often colour or pattern, and are harder than cross-category ones (SGML Fig. 1).

On-disk layout (the In-Shop archive's)::

    img/<GENDER>/<Category>/id_XXXXXXXX/NN_V_view.jpg
    Eval/list_eval_partition.txt   count, "image_name item_id evaluation_status", padded columns
    Anno/list_item_inshop.txt      count, then item ids
    Anno/list_attr_cloth.txt       count, "attribute_name", one name per line
    Anno/list_attr_items.txt       count, "item_id attribute_labels", then id and +-1 per attribute
    Anno/list_bbox_inshop.txt      count, header, image_name clothes_type pose_type x_1 y_1 x_2 y_2
    synthshop.json                 manifest (size, seed, counts); written LAST, atomically

Split like In-Shop: train and test items are disjoint; each test item's images are divided into
query and gallery (at least one of each). Output is byte-identical for the same (size, seed):
every item and image draws from its own seeded generator, so worker count and order do not matter.

Sizes (measured on one core of a 2-core machine): ``tiny`` 48 items x 6 images at 64 px (288
images, ~0.7 s); ``small`` 240 items x 6-10 images at 64 px (~1.9k images, ~4 s); ``medium`` 600 items x
6-10 images at 64 px (~4.8k images, ~1.3k queries; the tune preset's set); ``large`` 3,200 items x 4-8 images at 64 px
(~19k images, 80% of the items test items, 8,172 queries scored in 8 galleries of 320 items; the regression
preset's set, ~24 s); ``full`` 4,000
items x 4-22 images (mean 13, ~52k images) at 256 px -- In-Shop scale, ~17 ms per image on an idle
core (~15 min; ~30 min when the cores are shared); ``workers`` splits it over processes.

Modules: ``plan`` (presets, attribute tables, per-item plan), ``render`` (pixels), ``annotations``
(the In-Shop text files), ``generate`` (folder rules and the generation itself). This package
registers the ``synthshop`` loader; ``dmlbench data synth`` lives in ``dmlbench.cli.data``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmlbench.data import DATASETS
from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.data.synthshop.generate import (
    MANIFEST,
    PARTIAL_MARKER,
    generate_synthshop,
    is_complete,
    is_synthshop_folder,
    read_manifest,
)
from dmlbench.data.synthshop.plan import (
    CATEGORIES,
    COLOURS,
    PATTERNS,
    SIZE_CLASSES,
    SIZES,
    SynthSize,
    attribute_names,
    plan_items,
)

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "MANIFEST",
    "PARTIAL_MARKER",
    "PATTERNS",
    "SIZES",
    "SIZE_CLASSES",
    "SynthSize",
    "attribute_names",
    "gallery_groups",
    "generate_synthshop",
    "is_complete",
    "is_synthshop_folder",
    "load_synthshop",
    "plan_items",
    "read_manifest",
]


@DATASETS.register("synthshop")
def load_synthshop(root: str | Path, *, val_classes: float = 0.0, subset: int | None = None,
                   seed: int = 0, crop_bboxes: bool = False) -> DatasetIndex:
    """Read a generated synthshop folder through the In-Shop loader (same files, same protocol).

    `crop_bboxes` crops each image to the product's box from ``Anno/list_bbox_inshop.txt``.
    """
    from dmlbench.data.inshop import read_inshop  # the In-Shop reader is the code under test here

    root = Path(root)
    if read_manifest(root) is None:
        raise DatasetError(
            f"{root} is not a finished synthshop folder (no {MANIFEST}); "
            f"create it with: dmlbench data synth {root} --size tiny"
        )
    index = read_inshop(root, val_classes=val_classes, subset=subset, seed=seed, crop_bboxes=crop_bboxes,
                        name="synthshop")
    index.name = "synthshop"
    per_gallery = (read_manifest(root) or {}).get("preset", {}).get("items_per_gallery")
    if per_gallery:
        index.galleries = gallery_groups(index.labels, index.splits, int(per_gallery))
        count = int(index.galleries.max()) + 1
        index.notes.append(f"{count} galleries of {per_gallery} test items: each query is ranked against its own")
        index.validate()
    return index


def gallery_groups(labels: np.ndarray, splits: np.ndarray, items_per_gallery: int) -> np.ndarray:
    """Gallery group per image: test items in id order, `items_per_gallery` to a group; -1 elsewhere.

    >>> gallery_groups(np.array([5, 5, 7, 7, 9, 2]), np.array(["query", "gallery", "query", "gallery", "query", "train"]), 2)
    array([ 0,  0,  0,  0,  1, -1])
    """
    test = np.isin(splits, ("query", "gallery"))
    items = np.unique(labels[test])
    out = np.full(len(labels), -1, dtype=np.int64)
    out[test] = np.searchsorted(items, labels[test]) // items_per_gallery
    return out
