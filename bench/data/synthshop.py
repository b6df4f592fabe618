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
images, ~0.7 s); ``small`` 240 items x 6-10 images at 64 px (~1.9k images, ~4 s); ``full`` 4,000
items x 4-22 images (mean 13, ~52k images) at 256 px -- In-Shop scale, ~17 ms per image on an idle
core (~15 min; ~30 min when the cores are shared); ``workers`` splits it over processes.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import io
import json
import math
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dmlbench.data import DATASETS
from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.rundir import atomic_write_json, atomic_write_text

MANIFEST = "synthshop.json"
PARTIAL_MARKER = ".synthshop-partial"  # marks a folder whose generation started (possibly killed)
GENERATOR_VERSION = 1  # bump when the rendering changes: a folder with an older version is regenerated
OWNED_PATHS = ("img", "Anno", "Eval", MANIFEST, PARTIAL_MARKER)


@dataclass(frozen=True)
class SynthSize:
    """A size preset: how many items, images per item (inclusive range) and image side in pixels."""

    name: str
    num_items: int
    images_per_item: tuple[int, int]
    image_size: int


SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize("tiny", 48, (6, 6), 64),
    "small": SynthSize("small", 240, (6, 10), 64),
    "full": SynthSize("full", 4000, (4, 22), 256),
}

# Category = garment shape; the folder mimics In-Shop's img/<GENDER>/<Category>/ layout.
# Shapes are polygons in the unit square (y down); "extras" are drawn on top of the polygon.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("tee", "MEN/Tees_Tanks"),
    ("jacket", "MEN/Jackets_Vests"),
    ("trousers", "MEN/Pants"),
    ("shoe", "MEN/Shoes"),
    ("dress", "WOMEN/Dresses"),
    ("skirt", "WOMEN/Skirts"),
    ("bag", "WOMEN/Bags"),
    ("hat", "WOMEN/Hats"),
)
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "tee": [(0.3, 0.15), (0.42, 0.12), (0.5, 0.18), (0.58, 0.12), (0.7, 0.15), (0.9, 0.35), (0.8, 0.45),
            (0.72, 0.38), (0.72, 0.88), (0.28, 0.88), (0.28, 0.38), (0.2, 0.45), (0.1, 0.35)],
    "jacket": [(0.3, 0.1), (0.5, 0.18), (0.7, 0.1), (0.88, 0.24), (0.95, 0.82), (0.83, 0.84), (0.76, 0.42),
               (0.76, 0.9), (0.24, 0.9), (0.24, 0.42), (0.17, 0.84), (0.05, 0.82), (0.12, 0.24)],
    "trousers": [(0.28, 0.08), (0.72, 0.08), (0.78, 0.94), (0.56, 0.94), (0.5, 0.36), (0.44, 0.94),
                 (0.22, 0.94)],
    "shoe": [(0.08, 0.56), (0.42, 0.5), (0.52, 0.34), (0.7, 0.34), (0.72, 0.58), (0.93, 0.66), (0.93, 0.8),
             (0.08, 0.8)],
    "dress": [(0.4, 0.08), (0.6, 0.08), (0.63, 0.4), (0.86, 0.92), (0.14, 0.92), (0.37, 0.4)],
    "skirt": [(0.32, 0.22), (0.68, 0.22), (0.86, 0.8), (0.14, 0.8)],
    "bag": [(0.18, 0.38), (0.82, 0.38), (0.86, 0.86), (0.14, 0.86)],
    "hat": [(0.3, 0.66), (0.33, 0.3), (0.67, 0.3), (0.7, 0.66), (0.92, 0.7), (0.9, 0.78), (0.1, 0.78),
            (0.08, 0.7)],
}
# Where logo and buttons may go (x0, y0, x1, y1): a region inside every shape of the category.
_BODY_BOX: dict[str, tuple[float, float, float, float]] = {
    "tee": (0.34, 0.28, 0.66, 0.78), "jacket": (0.3, 0.3, 0.7, 0.82), "trousers": (0.32, 0.12, 0.68, 0.3),
    "shoe": (0.2, 0.6, 0.85, 0.76), "dress": (0.42, 0.14, 0.58, 0.6), "skirt": (0.36, 0.3, 0.64, 0.72),
    "bag": (0.25, 0.45, 0.75, 0.8), "hat": (0.38, 0.36, 0.62, 0.62),
}
# Colour families (hue, saturation, value); each item jitters its own shade around the family.
COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.0, 0.8, 0.8)),
    ("orange", (0.07, 0.85, 0.92)),
    ("yellow", (0.15, 0.8, 0.9)),
    ("green", (0.33, 0.7, 0.6)),
    ("blue", (0.6, 0.75, 0.8)),
    ("purple", (0.78, 0.6, 0.6)),
    ("black", (0.0, 0.0, 0.12)),
    ("white", (0.0, 0.0, 0.93)),
)
PATTERNS = ("plain", "stripes", "polka dot", "checks", "floral")
SIZE_CLASSES = (("small", 0.62), ("medium", 0.76), ("large", 0.9))  # object extent as a fraction of the frame
# In-Shop image names: <outfit>_<view id>_<view name>.jpg; views cycle within an outfit.
VIEWS = ((1, "front"), (2, "side"), (3, "back"), (4, "full"), (7, "additional"))


def attribute_names() -> list[str]:
    """One-hot blocks: category, colour, pattern, accent colour, size class (32 names).

    >>> names = attribute_names()
    >>> len(names), names[0], names[8], names[16], names[-1]
    (32, 'tee', 'red', 'plain', 'size large')
    """
    return (
        [name for name, _ in CATEGORIES]
        + [name for name, _ in COLOURS]
        + list(PATTERNS)
        + [f"{name} accent" for name, _ in COLOURS]
        + [f"size {name}" for name, _ in SIZE_CLASSES]
    )


@dataclass(frozen=True)
class ItemSpec:
    """The semantic attributes of one item (indices into the tables above)."""

    item_id: str
    category: int
    colour: int
    pattern: int
    accent: int
    size_class: int
    num_images: int
    split: str  # "train" or "test"

    def attribute_vector(self) -> np.ndarray:
        """+1/-1 per attribute, in attribute_names() order."""
        blocks = (
            (self.category, len(CATEGORIES)),
            (self.colour, len(COLOURS)),
            (self.pattern, len(PATTERNS)),
            (self.accent, len(COLOURS)),
            (self.size_class, len(SIZE_CLASSES)),
        )
        out = []
        for index, width in blocks:
            block = -np.ones(width, dtype=np.int64)
            block[index] = 1
            out.append(block)
        return np.concatenate(out)

    @property
    def folder(self) -> str:
        return f"img/{CATEGORIES[self.category][1]}/{self.item_id}"


def image_names(num_images: int) -> list[str]:
    """In-Shop style file names of an item's images.

    >>> image_names(6)
    ['01_1_front.jpg', '01_2_side.jpg', '01_3_back.jpg', '01_4_full.jpg', '01_7_additional.jpg', '02_1_front.jpg']
    """
    names = []
    for k in range(num_images):
        view_id, view = VIEWS[k % len(VIEWS)]
        names.append(f"{k // len(VIEWS) + 1:02d}_{view_id}_{view}.jpg")
    return names


def plan_items(size: SynthSize, seed: int) -> list[ItemSpec]:
    """Attributes, image counts and train/test split of every item (cheap; no pixels).

    >>> items = plan_items(SIZES["tiny"], seed=0)
    >>> len(items), sum(i.split == "train" for i in items), items[0].item_id
    (48, 24, 'id_00000001')
    """
    rng = np.random.default_rng([seed, 1])
    n = size.num_items
    category = rng.integers(len(CATEGORIES), size=n)
    colour = rng.integers(len(COLOURS), size=n)
    pattern = rng.integers(len(PATTERNS), size=n)
    # The accent differs from the main colour, otherwise a pattern would be invisible.
    accent = (colour + rng.integers(1, len(COLOURS), size=n)) % len(COLOURS)
    size_class = rng.integers(len(SIZE_CLASSES), size=n)
    lo, hi = size.images_per_item
    num_images = rng.integers(lo, hi + 1, size=n)
    # Train and test items interleave over the id range, as in In-Shop.
    is_train = np.zeros(n, dtype=bool)
    is_train[rng.permutation(n)[: n // 2]] = True
    return [
        ItemSpec(
            item_id=f"id_{i + 1:08d}",
            category=int(category[i]),
            colour=int(colour[i]),
            pattern=int(pattern[i]),
            accent=int(accent[i]),
            size_class=int(size_class[i]),
            num_images=int(num_images[i]),
            split="train" if is_train[i] else "test",
        )
        for i in range(n)
    ]


def query_gallery_split(num_images: int, seed: int, item_index: int) -> list[str]:
    """"query"/"gallery" per image of a test item: about half each, at least one of each.

    >>> sorted(query_gallery_split(2, 0, 5))
    ['gallery', 'query']
    """
    rng = np.random.default_rng([seed, 5, item_index])
    num_query = min(max(1, round(num_images * 0.53)), num_images - 1)  # In-Shop: 14,218 q / 12,612 g
    status = np.array(["gallery"] * num_images, dtype=object)
    status[rng.permutation(num_images)[:num_query]] = "query"
    return status.tolist()


# ---------------------------------------------------------------- rendering (PIL + numpy)


def _rgb(hsv: tuple[float, float, float]) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(*hsv)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _item_colour(family: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """The item's own shade: the family colour with small hue/saturation/value jitter."""
    h, s, v = COLOURS[family][1]
    h = (h + rng.uniform(-0.025, 0.025)) % 1.0
    s = float(np.clip(s + rng.uniform(-0.1, 0.1), 0.0, 1.0)) if s > 0 else 0.0
    v = float(np.clip(v + rng.uniform(-0.1, 0.1), 0.0, 1.0))
    return _rgb((h, s, v))


def _pattern_mask(pattern: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (side, side) mask where the accent colour shows; item-specific period/phase/angle."""
    if pattern == "plain":
        return np.zeros((side, side), dtype=bool)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    period = side * rng.uniform(0.08, 0.16)
    angle = rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4]) + rng.uniform(-0.15, 0.15)
    u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)
    v = -xx * math.sin(angle) + yy * math.cos(angle) + rng.uniform(0, period)
    if pattern == "stripes":
        return (u % period) < period * rng.uniform(0.3, 0.55)
    if pattern == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(bool)
    if pattern == "polka dot":
        # Distance to the nearest node of a rotated lattice; dots of item-specific radius.
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        return du * du + dv * dv < (period * rng.uniform(0.2, 0.35)) ** 2
    # floral: small five-petal flowers at item-specific random places.
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(10, 22))):
        cx, cy = rng.uniform(0, side, size=2)
        petal = side * rng.uniform(0.025, 0.045)
        turn = rng.uniform(0, 2 * math.pi)
        for p in range(5):
            a = turn + 2 * math.pi * p / 5
            px, py = cx + 1.6 * petal * math.cos(a), cy + 1.6 * petal * math.sin(a)
            draw.ellipse((px - petal, py - petal, px + petal, py + petal), fill=255)
    return np.asarray(canvas) > 0


def _render_item(item: ItemSpec, seed: int, item_index: int, side: int) -> tuple[Image.Image, Image.Image]:
    """The item's front and back sprites (RGBA, side x side), rendered at 2x and downsampled."""
    rng = np.random.default_rng([seed, 2, item_index])
    big = 2 * side
    shape = CATEGORIES[item.category][0]
    extent = SIZE_CLASSES[item.size_class][1]
    offset = (1.0 - extent) / 2

    def to_px(x: float, y: float) -> tuple[float, float]:
        return ((offset + extent * x) * big, (offset + extent * y) * big)

    mask = Image.new("L", (big, big), 0)
    draw_mask = ImageDraw.Draw(mask)
    draw_mask.polygon([to_px(x, y) for x, y in _POLYGONS[shape]], fill=255)
    if shape == "bag":  # handle
        x0, y0 = to_px(0.32, 0.14)
        x1, y1 = to_px(0.68, 0.62)
        draw_mask.arc((x0, y0, x1, y1), 180, 360, fill=255, width=max(2, big // 28))

    main = np.array(_item_colour(item.colour, rng), dtype=np.float32)
    accent = np.array(_item_colour(item.accent, rng), dtype=np.float32)
    pattern = _pattern_mask(PATTERNS[item.pattern], big, rng)
    pixels = np.where(pattern[..., None], accent, main)
    # Soft shading from a light above-left, so the surface is not flat colour.
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
    pixels *= (1.08 - 0.25 * (0.6 * yy + 0.4 * xx))[..., None]
    body = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    back = body.copy()
    front = body
    draw = ImageDraw.Draw(front)
    bx0, by0, bx1, by1 = _BODY_BOX[shape]
    # Fine detail that tells items with equal attributes apart: logo (front only) and buttons.
    logo_colour = _rgb((rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0)))
    lx, ly = to_px(rng.uniform(bx0, bx1), rng.uniform(by0, by1))
    r = big * extent * rng.uniform(0.05, 0.09)
    logo_kind = int(rng.integers(4))
    if logo_kind == 0:
        draw.ellipse((lx - r, ly - r, lx + r, ly + r), fill=logo_colour)
    elif logo_kind == 1:
        draw.rectangle((lx - r, ly - r, lx + r, ly + r), fill=logo_colour)
    elif logo_kind == 2:
        draw.polygon([(lx, ly - r), (lx + r, ly + r), (lx - r, ly + r)], fill=logo_colour)
    else:
        star = [(lx + (r if k % 2 == 0 else r / 2.5) * math.cos(math.pi * k / 5 - math.pi / 2),
                 ly + (r if k % 2 == 0 else r / 2.5) * math.sin(math.pi * k / 5 - math.pi / 2)) for k in range(10)]
        draw.polygon(star, fill=logo_colour)
    button_colour = tuple(int(c) for c in (accent * 0.5))
    button_x = rng.uniform(bx0, bx1)
    for by in np.sort(rng.uniform(by0, by1, size=int(rng.integers(0, 4)))):
        px, py = to_px(button_x, float(by))
        br = big * 0.018
        draw.ellipse((px - br, py - br, px + br, py + br), fill=button_colour)
    if shape == "jacket":  # zip line down the front
        x, y0 = to_px(0.5, 0.18)
        _, y1 = to_px(0.5, 0.9)
        draw.line((x, y0, x, y1), fill=button_colour, width=max(1, big // 64))

    sprites = []
    for face in (front, back):
        rgba = face.convert("RGBA")
        rgba.putalpha(mask)
        sprites.append(rgba.resize((side, side), Image.Resampling.LANCZOS))
    return sprites[0], sprites[1]


@functools.lru_cache(maxsize=4)
def _unit_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel coordinates scaled to [0, 1), cached per image side."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    return yy, xx


def _background(side: int, rng: np.random.Generator) -> Image.Image:
    """A two-colour gradient in a random direction with random clutter shapes."""
    c0 = np.array(_rgb((rng.uniform(), rng.uniform(0, 0.7), rng.uniform(0.3, 1.0))), dtype=np.float32)
    c1 = np.array(_rgb((rng.uniform(), rng.uniform(0, 0.7), rng.uniform(0.3, 1.0))), dtype=np.float32)
    yy, xx = _unit_grid(side)
    a = rng.uniform(0, 2 * math.pi)
    t = np.clip((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a) + 0.5, 0, 1)[..., None]
    image = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    _clutter(ImageDraw.Draw(image), side, rng, int(rng.integers(2, 7)), (0.1, 0.45))
    return image


def _clutter(draw: ImageDraw.ImageDraw, side: int, rng: np.random.Generator, count: int,
             extent: tuple[float, float]) -> None:
    for _ in range(count):
        colour = _rgb((rng.uniform(), rng.uniform(0, 0.9), rng.uniform(0.1, 1.0)))
        x, y = rng.uniform(-0.1, 1.1, size=2) * side
        w, h = rng.uniform(*extent, size=2) * side
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == 1:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.line((x, y, x + w, y + h), fill=colour, width=max(1, int(side * rng.uniform(0.01, 0.05))))


def _view_pose(view: str, rng: np.random.Generator) -> tuple[float, float, float, bool]:
    """(scale, horizontal squeeze, rotation in degrees, mirrored) for one view of an item."""
    scale = {"front": (0.85, 1.1), "side": (0.85, 1.1), "back": (0.85, 1.1), "full": (0.55, 0.72),
             "additional": (1.3, 1.7)}[view]
    squeeze = rng.uniform(0.55, 0.75) if view == "side" else 1.0
    return (rng.uniform(*scale), squeeze, float(np.clip(rng.normal(0, 12), -30, 30)), bool(rng.integers(2)))


def render_image(front: Image.Image, back: Image.Image, view: str, rng: np.random.Generator,
                 ) -> tuple[bytes, tuple[int, int, int, int]]:
    """One photo of an item: pose, background, occluders, lighting, noise; JPEG bytes and bbox."""
    side = front.width
    sprite = back if view == "back" else front
    scale, squeeze, degrees, mirrored = _view_pose(view, rng)
    shift = rng.uniform(-0.12, 0.12, size=2) * side
    # PIL's affine maps output pixels to input pixels: in = c + A^-1 (out - c - shift).
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    sx = (-1.0 if mirrored else 1.0) * scale * squeeze
    forward = np.array([[cos * sx, -sin * scale], [sin * sx, cos * scale]])
    inverse = np.linalg.inv(forward)
    centre = side / 2
    out_centre = np.array([centre, centre]) + shift
    offset = np.array([centre, centre]) - inverse @ out_centre
    posed = sprite.transform(
        (side, side), Image.Transform.AFFINE,
        (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1]),
        resample=Image.Resampling.BILINEAR,
    )
    image = _background(side, rng)
    image.paste(posed, (0, 0), posed)
    alpha = np.asarray(posed.getchannel("A")) > 127
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    bbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if len(rows) else (0, 0, side, side)
    if rng.uniform() < 0.3:  # small occluders in front of the product
        _clutter(ImageDraw.Draw(image), side, rng, int(rng.integers(1, 3)), (0.05, 0.15))

    # Lighting and colour balance (per-channel gain, brightness, gamma) as one lookup table per
    # channel -- far cheaper than float maths per pixel; then sensor noise.
    levels = np.arange(256, dtype=np.float64) / 255.0
    gain = rng.uniform(0.82, 1.18, size=3) * rng.uniform(0.75, 1.2)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip(np.power(levels, gamma)[None, :] * gain[:, None] * 255 + 0.5, 0, 255).astype(np.uint8)
    image = image.point(lut.ravel().tolist())
    sigma = rng.uniform(0, 0.025) * 255
    noise = rng.standard_normal((side, side, 3), dtype=np.float32) * sigma
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue(), bbox


def _render_item_images(job: tuple[ItemSpec, int, int, int, str]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Render and write every image of one item; returns (relative path, bbox) per image.

    A top-level function of picklable arguments so a process pool can run it.
    """
    item, seed, item_index, side, out = job
    front, back = _render_item(item, seed, item_index, side)
    folder = Path(out) / item.folder
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k, name in enumerate(image_names(item.num_images)):
        rng = np.random.default_rng([seed, 3, item_index, k])
        view = VIEWS[k % len(VIEWS)][1]
        data, bbox = render_image(front, back, view, rng)
        (folder / name).write_bytes(data)
        written.append((f"{item.folder}/{name}", bbox))
    return written


# ---------------------------------------------------------------- annotation files (In-Shop format)


def format_partition(rows: list[tuple[str, str, str]]) -> str:
    """list_eval_partition.txt: count, header, then columns padded with spaces like the original.

    >>> print(format_partition([("img/A/id_00000001/01_1_front.jpg", "id_00000001", "train")]), end="")
    1
    image_name item_id evaluation_status
    img/A/id_00000001/01_1_front.jpg                        id_00000001            train
    """
    width = max(len(name) for name, _, _ in rows) + 24
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    lines += [f"{name:<{width}}{item_id:<23}{status}" for name, item_id, status in rows]
    return "\n".join(lines) + "\n"


def format_attr_items(items: list[ItemSpec]) -> str:
    """list_attr_items.txt: count, header, then `id_XXXXXXXX  1 -1 ...` (values right-aligned).

    >>> text = format_attr_items(plan_items(SIZES["tiny"], 0)[:1])
    >>> text.splitlines()[:2], text.splitlines()[2].split()[0], len(text.splitlines()[2].split())
    (['1', 'item_id attribute_labels'], 'id_00000001', 33)
    """
    lines = [str(len(items)), "item_id attribute_labels"]
    lines += [item.item_id + " " + " ".join(f"{v:>2d}" for v in item.attribute_vector()) for item in items]
    return "\n".join(lines) + "\n"


def format_attr_cloth(names: list[str]) -> str:
    """list_attr_cloth.txt: count, "attribute_name", one (possibly multi-word) name per line."""
    return "\n".join([str(len(names)), "attribute_name", *names]) + "\n"


def format_item_list(items: list[ItemSpec]) -> str:
    """list_item_inshop.txt: count, then one item id per line (no header line)."""
    return "\n".join([str(len(items)), *(item.item_id for item in items)]) + "\n"


def format_bboxes(rows: list[tuple[str, int, int, tuple[int, int, int, int]]]) -> str:
    """list_bbox_inshop.txt: count, header, `image_name clothes_type pose_type x_1 y_1 x_2 y_2`."""
    width = max(len(name) for name, *_ in rows) + 8
    lines = [str(len(rows)), "image_name clothes_type pose_type x_1 y_1 x_2 y_2"]
    lines += [f"{name:<{width}}{ctype:<3}{pose:<3}{x1:<4}{y1:<4}{x2:<4}{y2}"
              for name, ctype, pose, (x1, y1, x2, y2) in rows]
    return "\n".join(lines) + "\n"


# In-Shop bbox codes: clothes type 1 upper / 2 lower / 3 full body; pose 1 front, 2 side, 3 back,
# 4 zoom-out, 5 zoom-in. Accessories count as "upper" (In-Shop has none; any code is as good).
_CLOTHES_TYPE = {"tee": 1, "jacket": 1, "trousers": 2, "skirt": 2, "dress": 3, "shoe": 2, "bag": 1, "hat": 1}
_POSE_TYPE = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 5}


# ---------------------------------------------------------------- the generator


def read_manifest(out: Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_synthshop_folder(out: Path) -> bool:
    """True when `out` holds a finished or a started (interrupted) synthshop generation."""
    return read_manifest(out) is not None or (Path(out) / PARTIAL_MARKER).exists()


def is_complete(out: Path, size: str, seed: int) -> bool:
    """True when `out` already holds a finished dataset of this size, seed and generator version."""
    manifest = read_manifest(out)
    return bool(manifest) and manifest.get("generator") == "synthshop" and manifest.get("version") == GENERATOR_VERSION \
        and manifest.get("size") == size and manifest.get("seed") == seed


def generate_synthshop(out: Path, size: str = "small", seed: int = 0, progress: bool = True,
                       workers: int = 1) -> Path:
    """Render the dataset into `out` (In-Shop layout) and return `out`.

    Refuses (DatasetError) a non-empty `out` that is not a synthshop folder; returns at once when
    `out` already holds the same size, seed and generator version; otherwise (another size/seed, or
    an interrupted run) removes only synthshop's own files and regenerates. The manifest is written
    last, so its presence means the folder is complete.
    """
    if size not in SIZES:
        raise DatasetError(f"unknown synthshop size '{size}'; choose one of {', '.join(SIZES)}")
    preset = SIZES[size]
    out = Path(out)
    if is_complete(out, size, seed):
        return out
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not is_synthshop_folder(out):
            raise DatasetError(
                f"{out} is not empty and is not a synthshop folder (no {MANIFEST}); refusing to write "
                "into it. Choose an empty or new folder."
            )
        for name in OWNED_PATHS:  # only synthshop's own files; anything else the user put there stays
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL_MARKER).write_text("synthshop generation in progress or interrupted; rerun to finish\n")

    started = time.perf_counter()
    items = plan_items(preset, seed)
    jobs = [(item, seed, i, preset.image_size, str(out)) for i, item in enumerate(items)]
    results = _run_jobs(jobs, workers, progress, total_images=sum(item.num_images for item in items))

    partition: list[tuple[str, str, str]] = []
    bboxes: list[tuple[str, int, int, tuple[int, int, int, int]]] = []
    for i, (item, written) in enumerate(zip(items, results, strict=True)):
        status = ["train"] * item.num_images if item.split == "train" else query_gallery_split(item.num_images, seed, i)
        shape = CATEGORIES[item.category][0]
        for k, ((rel_path, bbox), st) in enumerate(zip(written, status, strict=True)):
            partition.append((rel_path, item.item_id, st))
            bboxes.append((rel_path, _CLOTHES_TYPE[shape], _POSE_TYPE[VIEWS[k % len(VIEWS)][1]], bbox))

    atomic_write_text(out / "Eval" / "list_eval_partition.txt", format_partition(partition))
    atomic_write_text(out / "Anno" / "list_item_inshop.txt", format_item_list(items))
    atomic_write_text(out / "Anno" / "list_attr_cloth.txt", format_attr_cloth(attribute_names()))
    atomic_write_text(out / "Anno" / "list_attr_items.txt", format_attr_items(items))
    atomic_write_text(out / "Anno" / "list_bbox_inshop.txt", format_bboxes(bboxes))
    counts = {st: sum(1 for _, _, s in partition if s == st) for st in ("train", "query", "gallery")}
    manifest = {
        "generator": "synthshop",
        "version": GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "preset": asdict(preset),
        "num_items": len(items),
        "num_train_items": sum(item.split == "train" for item in items),
        "num_test_items": sum(item.split == "test" for item in items),
        "num_images": len(partition),
        "images": counts,
        "num_attributes": len(attribute_names()),
    }
    atomic_write_json(out / MANIFEST, manifest)  # last: the folder is complete from here on
    (out / PARTIAL_MARKER).unlink(missing_ok=True)
    if progress:
        print(f"synthshop {size} (seed {seed}): {len(partition)} images of {len(items)} items "
              f"in {time.perf_counter() - started:.1f} s -> {out}")
    return out


def _run_jobs(jobs: list[tuple[ItemSpec, int, int, int, str]], workers: int, progress: bool,
              total_images: int) -> list[list[tuple[str, tuple[int, int, int, int]]]]:
    from tqdm import tqdm

    bar = tqdm(total=total_images, unit="img", desc="synthshop", disable=not progress)
    results: list[list[tuple[str, tuple[int, int, int, int]]]] = []

    def collect(it: Iterator[list[tuple[str, tuple[int, int, int, int]]]]) -> None:
        for written in it:
            results.append(written)
            bar.update(len(written))

    try:
        if workers <= 1:
            collect(map(_render_item_images, jobs))
        else:
            # imap keeps item order; each item seeds its own generators, so output is identical.
            # fork where the OS has it: spawn re-imports __main__, which fails for `python -` scripts.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                collect(pool.imap(_render_item_images, jobs, chunksize=8))
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------- loader and CLI


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
    return index


def add_data_synth_parser(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "synth",
        help="render the synthshop dataset (In-Shop format) into a folder",
        description="Render synthshop, a procedurally generated product dataset in the DeepFashion In-Shop "
        "on-disk format. Deterministic from --seed. Sizes: "
        + "; ".join(f"{p.name}: {p.num_items} items x {p.images_per_item[0]}-{p.images_per_item[1]} images "
                    f"at {p.image_size} px" for p in SIZES.values())
        + ". 'full' takes several minutes (use --workers).",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder (new, empty, or a synthshop folder)")
    parser.add_argument("--size", choices=list(SIZES), default="small", help="size preset (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default: 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_data_synth)


def run_data_synth(args: argparse.Namespace) -> int:
    out: Path = args.out
    if is_complete(out, args.size, args.seed):
        print(f"{out} already holds synthshop size={args.size} seed={args.seed}; nothing to do")
        return 0
    try:
        generate_synthshop(out, size=args.size, seed=args.seed, progress=not args.quiet, workers=args.workers)
    except DatasetError as err:
        print(f"error: {err}")
        return 2
    return 0
