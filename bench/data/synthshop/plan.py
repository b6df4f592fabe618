"""synthshop planning: the size presets, attribute tables and each item's attributes, image count and split.

Cheap and pixel-free; every draw comes from a generator seeded by (seed, purpose[, item]), so the
plan of one item never depends on another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SynthSize:
    """A size preset: how many items, images per item (inclusive range), image side in pixels, and the
    fraction of items in the training split (In-Shop's is about half), and when set, how many test items
    share one gallery (`DatasetIndex.galleries`; None: one gallery for all, as In-Shop)."""

    name: str
    num_items: int
    images_per_item: tuple[int, int]
    image_size: int
    train_fraction: float = 0.5
    items_per_gallery: int | None = None


SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize("tiny", 48, (6, 6), 64),
    "small": SynthSize("small", 240, (6, 10), 64),
    # The fast (head) tier's regression set: >= 1,000 queries and enough distractors to stay off the ceiling.
    "medium": SynthSize("medium", 600, (6, 10), 64),
    # The regression preset's set. The query sample's noise limits a verdict's power and it shrinks with
    # the number of test items (docs/regression.md), so 80% of the items are test items (a head on frozen
    # features needs few training classes): ~8,000 queries of 2,560 items, scored in 8 galleries of 320
    # items each so that the task stays as hard as medium's 300-item gallery, not 8x harder.
    "large": SynthSize("large", 3200, (4, 8), 64, train_fraction=0.2, items_per_gallery=320),
    "full": SynthSize("full", 4000, (4, 22), 256),
}

# Category = garment shape; the folder mimics In-Shop's img/<GENDER>/<Category>/ layout.
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
    is_train[rng.permutation(n)[: int(n * size.train_fraction)]] = True
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
