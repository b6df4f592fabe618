"""Builders of tiny dataset folders in the exact on-disk formats of the official archives.

They cover the awkward cases of the real files: padded columns, count lines, CUB's malformed
attribute rows, In-Shop items under two folders, grayscale/CMYK/palette/alpha images, a truncated
JPEG, a missing image and a class with a single image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (12, 10), seed: int = 0) -> None:
    """A small JPEG (or PNG for modes JPEG cannot hold) with seeded random pixels in `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "RGB":
        img = rgb
    elif mode == "P":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        img = rgb.convert(mode)
    fmt = "JPEG" if mode in ("RGB", "L", "CMYK") else "PNG"
    img.save(path, format=fmt)


def write_truncated_jpeg(path: Path, seed: int = 0) -> None:
    """A JPEG cut in half: its header parses (PIL's verify() passes) but decoding fails."""
    write_image(path, "RGB", size=(48, 40), seed=seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def counted(header: str, rows: list[str]) -> str:
    """DeepFashion layout: count line, header line, rows."""
    return "\n".join([str(len(rows)), header, *rows]) + "\n"


# ------------------------------------------------------------------------------------------ In-Shop


@dataclass
class InShopItem:
    item: int
    folders: list[str]  # category folders, e.g. ["WOMEN/Dresses"]; two for the awkward items
    status: str  # train | query-gallery
    images: int = 3


@dataclass
class InShopFixture:
    root: Path
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # image name, item id, status
    attributes: dict[str, list[int]] = field(default_factory=dict)  # item id -> +-1 values
    attribute_names: list[str] = field(default_factory=list)
    truncated: str = ""
    missing: str = ""
    grayscale: str = ""
    cmyk: str = ""


INSHOP_ITEMS = [
    InShopItem(1, ["WOMEN/Dresses"], "train"),
    InShopItem(2, ["WOMEN/Dresses"], "train"),
    InShopItem(3, ["MEN/Denim", "WOMEN/Denim"], "train", images=4),  # an item under two folders
    InShopItem(4, ["MEN/Tees_Tanks"], "train", images=1),  # a class with one image
    InShopItem(5, ["WOMEN/Dresses"], "query-gallery"),
    InShopItem(6, ["MEN/Denim"], "query-gallery", images=4),
    InShopItem(7, ["WOMEN/Skirts", "WOMEN/Dresses"], "query-gallery", images=4),
]
INSHOP_ATTRIBUTE_NAMES = ["lightweight", "a-line", "floral print", "denim"]


def make_inshop(
    root: Path,
    *,
    images: bool = True,
    attributes: bool = True,
    attr_cloth_under_attributes_dir: bool = False,
    bboxes: bool = True,
    bad_images: bool = True,
) -> InShopFixture:
    """An In-Shop folder: Eval/list_eval_partition.txt with padded columns, Anno/*, img/..."""
    fx = InShopFixture(root=root, attribute_names=list(INSHOP_ATTRIBUTE_NAMES))
    for spec in INSHOP_ITEMS:
        item_id = f"id_{spec.item:08d}"
        for k in range(spec.images):
            folder = spec.folders[k % len(spec.folders)]
            name = f"img/{folder}/{item_id}/{k + 1:02d}_{k % 4 + 1}_front.jpg"
            status = "train" if spec.status == "train" else ("query" if k % 2 == 0 else "gallery")
            fx.rows.append((name, item_id, status))
        rng = np.random.default_rng(spec.item)
        fx.attributes[item_id] = [1 if v else -1 for v in rng.random(len(INSHOP_ATTRIBUTE_NAMES)) < 0.5]

    (root / "Eval").mkdir(parents=True, exist_ok=True)
    # Padded columns as in the official file: the image name is left-justified in a wide column.
    rows = [f"{n:<60}{i:<15}{s}" for n, i, s in fx.rows]
    (root / "Eval" / "list_eval_partition.txt").write_text(counted("image_name item_id evaluation_status", rows))

    anno = root / "Anno"
    anno.mkdir(exist_ok=True)
    if attributes:
        attr_rows = [f"{item} " + " ".join(f"{v:>2}" for v in vals) for item, vals in fx.attributes.items()]
        (anno / "list_attr_items.txt").write_text(counted("item_id attribute_labels", attr_rows))
        cloth_dir = anno / "attributes" if attr_cloth_under_attributes_dir else anno
        cloth_dir.mkdir(exist_ok=True)
        (cloth_dir / "list_attr_cloth.txt").write_text(counted("attribute_name", INSHOP_ATTRIBUTE_NAMES))
    if bboxes:
        box_rows = [f"{n:<60}1 1 {2} {1} {10} {8}" for n, _, _ in fx.rows]
        (anno / "list_bbox_inshop.txt").write_text(
            counted("image_name clothes_type pose_type x_1 y_1 x_2 y_2", box_rows)
        )

    if images:
        names = [n for n, _, _ in fx.rows]
        for k, name in enumerate(names):
            write_image(root / name, "RGB", seed=k)
        fx.grayscale, fx.cmyk = names[0], names[1]
        write_image(root / fx.grayscale, "L", seed=100)
        write_image(root / fx.cmyk, "CMYK", seed=101)
        if bad_images:
            fx.truncated, fx.missing = names[-1], names[-2]
            write_truncated_jpeg(root / fx.truncated)
            (root / fx.missing).unlink()
    return fx


# ------------------------------------------------------------------------------------------ CUB


@dataclass
class CubFixture:
    root: Path  # the CUB_200_2011 folder
    image_ids: list[int]
    labels: list[int]
    present: dict[tuple[int, int], tuple[int, int]]  # (image id, attribute id) -> (is_present, certainty)
    malformed_rows: int
    single_image_class: int


CUB_CLASSES = {1: 3, 2: 2, 3: 1, 101: 3, 102: 2, 150: 2}  # class id -> images; class 3 has one image
CUB_ATTRS = 312


def make_cub(parent: Path, *, images: bool = True, attributes: bool = True) -> CubFixture:
    """``parent/CUB_200_2011/`` with all the annotation files, ``parent/attributes.txt`` next to it."""
    cub = parent / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True, exist_ok=True)
    class_names = {c: f"{c:03d}.Bird_{c}" for c in range(1, 201)}
    (cub / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in class_names.items()))
    image_ids: list[int] = []
    labels: list[int] = []
    lines_images, lines_labels, lines_boxes = [], [], []
    next_id = 1
    for cls, count in CUB_CLASSES.items():
        for k in range(count):
            path = f"{class_names[cls]}/Bird_{cls}_{k:04d}_{next_id}.jpg"
            lines_images.append(f"{next_id} {path}")
            lines_labels.append(f"{next_id} {cls}")
            lines_boxes.append(f"{next_id} 1.0 2.0 6.0 5.0")
            image_ids.append(next_id)
            labels.append(cls)
            if images:
                write_image(cub / "images" / path, "RGB", seed=next_id)
            next_id += 1
    # image_class_labels.txt lists one image more than images.txt, as in truncated copies.
    lines_labels.append(f"{next_id} 150")
    (cub / "images.txt").write_text("\n".join(lines_images) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(lines_labels) + "\n")
    (cub / "bounding_boxes.txt").write_text("\n".join(lines_boxes) + "\n")
    (cub / "train_test_split.txt").write_text("".join(f"{i} {i % 2}\n" for i in image_ids))
    (parent / "attributes.txt").write_text("".join(f"{a} has_part::value_{a}\n" for a in range(1, CUB_ATTRS + 1)))
    (cub / "attributes" / "certainties.txt").write_text("1 not visible\n2 guessing\n3 probably\n4 definitely\n")

    present: dict[tuple[int, int], tuple[int, int]] = {}
    malformed = 0
    if attributes:
        rng = np.random.default_rng(7)
        rows = []
        for i in image_ids:
            for a in range(1, CUB_ATTRS + 1):
                is_present = int(rng.random() < 0.2)
                certainty = int(rng.integers(1, 5))
                present[(i, a)] = (is_present, certainty)
                time = f"{rng.random() * 20:.3f}"
                if a in (5, 6) and i in (1, 2):
                    # The real file's malformed rows: one extra token. Both placements occur in mirrors.
                    extra = f"{is_present} {certainty} 0" if a == 5 else f"{is_present} 0 {certainty}"
                    rows.append(f"{i} {a} {extra} {time}")
                    malformed += 1
                else:
                    rows.append(f"{i} {a} {is_present} {certainty} {time}")
        (cub / "attributes" / "image_attribute_labels.txt").write_text("\n".join(rows) + "\n")
    return CubFixture(cub, image_ids, labels, present, malformed, single_image_class=3)


# ------------------------------------------------------------------------------------------ SOP


SOP_SUPER = {1: "bicycle", 2: "cabinet", 3: "coffee_maker"}


def make_sop(root: Path, *, images: bool = True, train_classes: int = 6, test_classes: int = 6) -> Path:
    """Ebay_train.txt / Ebay_test.txt with the official header; class ids disjoint between them."""
    root.mkdir(parents=True, exist_ok=True)
    image_id = 1
    class_id = 1
    for fname, n_classes in (("Ebay_train.txt", train_classes), ("Ebay_test.txt", test_classes)):
        rows = ["image_id class_id super_class_id path"]
        for _ in range(n_classes):
            super_id = (class_id - 1) % len(SOP_SUPER) + 1
            for k in range(1 + class_id % 3):  # 1-3 images per class
                path = f"{SOP_SUPER[super_id]}_final/{100000 + class_id}_{k}.JPG"
                rows.append(f"{image_id} {class_id} {super_id} {path}")
                if images:
                    write_image(root / path, "RGB", seed=image_id)
                image_id += 1
            class_id += 1
        (root / fname).write_text("\n".join(rows) + "\n")
    return root
