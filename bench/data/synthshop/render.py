"""synthshop rendering (PIL + numpy): an item's front/back sprites, then each photo's pose, background,
clutter, lighting, noise and JPEG quality. Each image draws from its own seeded generator."""

from __future__ import annotations

import colorsys
import functools
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dmlbench.data.synthshop.plan import (
    CATEGORIES,
    COLOURS,
    PATTERNS,
    SIZE_CLASSES,
    VIEWS,
    ItemSpec,
    image_names,
)

# Shapes are polygons in the unit square (y down); "extras" are drawn on top of the polygon.
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


def render_item_images(job: tuple[ItemSpec, int, int, int, str]) -> list[tuple[str, tuple[int, int, int, int]]]:
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
