"""Pixels: lazy RGB decoding, a full-decode scan for bad files, transforms, and the torch Dataset.

Images are only opened here, never while an index is built. Every image comes out as 8-bit RGB
whatever its stored mode (L, CMYK, P, RGBA, LA, I;16, 1, F), because the backbones expect 3 channels.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from bench.datasets.base import DatasetError, DatasetIndex

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eval resize side = image_size * 8/7, the 256 -> 224 ratio of the usual ImageNet evaluation.
EVAL_RESIZE_RATIO = 256 / 224
MAX_LISTED_BAD = 20
SKIP_HINT = "set data.skip_bad_images=true to exclude them"


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite a transparent image onto white: transparent pixels carry arbitrary colours."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(img: Image.Image) -> Image.Image:
    """I;16 / I / F grey images -> 8-bit RGB. PIL's own convert("RGB") clips them to 255 instead of scaling."""
    arr = np.asarray(img, dtype=np.float64)
    top = arr.max() if arr.size else 0.0
    if top > 255:  # 16-bit range (PNG stores 16-bit grey as I;16 or I)
        arr = arr / 257.0
    grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> RGB.

    >>> to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0))
    (7, 7, 7)
    >>> to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0))  # fully transparent -> white
    (255, 255, 255)
    >>> to_rgb(Image.new("I;16", (1, 1), 65535)).getpixel((0, 0))
    (255, 255, 255)
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_rgb(img)
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image fully (truncation raises OSError here, not later in a worker) and return RGB."""
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)


def image_problem(path: Path) -> str | None:
    """None when the file decodes completely; otherwise 'missing', 'truncated' or 'unreadable: ...'.

    PIL's verify() does not notice a truncated JPEG, so this decodes every pixel.
    """
    if not path.is_file():
        return "missing"
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched PIL to pad truncated files with grey; that would hide exactly what we look for.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; the image scan cannot detect truncation")
    try:
        with Image.open(path) as img:
            img.load()
    except UnidentifiedImageError as err:
        return f"unreadable: {err}"
    except OSError as err:
        text = str(err)
        # Judge by PIL's wording, not by the path (a folder may be called "truncated").
        return "truncated" if "truncated" in text.replace(str(path), "").lower() else f"unreadable: {text}"
    except Exception as err:  # noqa: BLE001 - any decoder failure makes the file unusable
        return f"unreadable: {type(err).__name__}: {err}"
    return None


def scan_images(
    root: str | Path, paths: Sequence[str], progress: bool = True, workers: int | None = None
) -> list[tuple[str, str]]:
    """Fully decode every image; return (relative path, reason) for each one that fails, in input order.

    Threads overlap the decoding (PIL releases the GIL while decoding).
    """
    root = Path(root)
    workers = workers or min(8, os.cpu_count() or 1)
    from tqdm import tqdm  # only needed when scanning

    def probe(rel: str) -> str | None:
        return image_problem(root / rel)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(
            tqdm(
                pool.map(probe, paths, chunksize=64),
                total=len(paths),
                desc="checking images",
                unit="img",
                disable=not progress,
                leave=False,
            )
        )
    return [(rel, reason) for rel, reason in zip(paths, reasons, strict=True) if reason is not None]


def format_bad_images(bad: Sequence[tuple[str, str]], limit: int = MAX_LISTED_BAD) -> str:
    """'a.jpg (missing), b.jpg (truncated), ... and 3 more'.

    >>> format_bad_images([("a.jpg", "missing"), ("b.jpg", "truncated"), ("c.jpg", "missing")], limit=2)
    'a.jpg (missing), b.jpg (truncated) ... and 1 more'
    """
    shown = ", ".join(f"{p} ({why})" for p, why in bad[:limit])
    more = len(bad) - limit
    return shown + (f" ... and {more} more" if more > 0 else "")


def check_images_or_raise(
    index: DatasetIndex,
    positions: np.ndarray,
    skip_bad: bool,
    log: Callable[[str], None],
    progress: bool | None = None,
) -> np.ndarray:
    """The usable subset of `positions`. Bad images stop the run unless `skip_bad`; then they are logged.

    ``progress``: None shows the scan's progress bar only on a terminal.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if progress is None:
        progress = sys.stderr.isatty()
    rel_paths = [index.paths[i] for i in positions]
    bad = scan_images(index.root, rel_paths, progress=progress)
    if not bad:
        return positions
    listing = format_bad_images(bad)
    if not skip_bad:
        raise DatasetError(
            f"{index.name}: {len(bad)} of {len(positions)} images are missing or unreadable under "
            f"{index.root}: {listing}; fix or re-extract them, or {SKIP_HINT}"
        )
    bad_set = {p for p, _ in bad}
    keep = np.array([p not in bad_set for p in rel_paths], dtype=bool)
    log(f"{index.name}: excluded {len(bad)} unreadable images: {listing}")
    return positions[keep]


def build_transform(image_size: int, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """Train: random resized crop (scale 0.9-1.0) + horizontal flip, as SGML. Eval: resize + centre crop."""
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size, scale=(0.9, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
    return transforms.Compose(
        [
            transforms.Resize(round(image_size * EVAL_RESIZE_RATIO)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            normalize,
        ]
    )


def crop_box(img: Image.Image, box: np.ndarray) -> Image.Image:
    """Crop to an (x, y, w, h) pixel box clamped to the image; a NaN or empty box leaves the image whole.

    >>> crop_box(Image.new("RGB", (10, 8)), np.array([2.0, 1.0, 50.0, 3.0])).size
    (8, 3)
    >>> crop_box(Image.new("RGB", (10, 8)), np.array([np.nan] * 4)).size
    (10, 8)
    """
    if not np.all(np.isfinite(box)):
        return img
    x, y, w, h = (float(v) for v in box)
    left, top = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    right, bottom = min(img.width, int(np.ceil(x + w))), min(img.height, int(np.ceil(y + h)))
    if right - left < 1 or bottom - top < 1:
        return img
    return img.crop((left, top, right, bottom))


class ImageDataset(Dataset):
    """Item i -> (image tensor, dataset index positions[i]); the index lets the caller look up labels.

    ``crop_bboxes``: None follows the index (the loaders attach boxes only when their crop option is
    on); True/False forces it.
    """

    def __init__(
        self,
        index: DatasetIndex,
        positions: np.ndarray,
        transform: Callable[[Image.Image], torch.Tensor],
        crop_bboxes: bool | None = None,
    ) -> None:
        self.index = index
        self.positions = np.asarray(positions, dtype=np.int64)
        self.transform = transform
        crop = index.bboxes is not None if crop_bboxes is None else crop_bboxes
        if crop and index.bboxes is None:
            raise DatasetError(f"{index.name}: bounding-box crop requested but the index has no boxes")
        self.crop_bboxes = crop

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pos = int(self.positions[i])
        img = load_rgb(self.index.root / self.index.paths[pos])
        if self.crop_bboxes:
            assert self.index.bboxes is not None
            img = crop_box(img, self.index.bboxes[pos])
        return self.transform(img), pos
