"""Decoding: an image file -> fully decoded 8-bit RGB, or the reason it cannot be decoded.

Images are only opened here, never while an index is built. Every image comes out as 8-bit RGB
whatever its stored mode (L, CMYK, P, RGBA, LA, I;16, 1, F), because the backbones expect 3 channels.
The rest of the pixel path: scan (bad-file check) and scan_cache, transforms, dataset (ImageDataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError


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
