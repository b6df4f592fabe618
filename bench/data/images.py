"""Pixels: lazy RGB decoding, a full-decode scan for bad files, transforms, and the torch Dataset.

Images are only opened here, never while an index is built. Every image comes out as 8-bit RGB
whatever its stored mode (L, CMYK, P, RGBA, LA, I;16, 1, F), because the backbones expect 3 channels.
"""

from __future__ import annotations

import hashlib
import logging
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

from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.rundir import atomic_write_text

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]  # per-channel (mean, std)
IMAGENET_NORMALIZATION: Normalization = (IMAGENET_MEAN, IMAGENET_STD)
# Eval resize side = image_size * 8/7, the 256 -> 224 ratio of the usual ImageNet evaluation.
EVAL_RESIZE_RATIO = 256 / 224
MAX_LISTED_BAD = 20
SKIP_HINT = "set data.skip_bad_images=true to exclude them"
CACHE_DIR_ENV = "DMLBENCH_CACHE_DIR"  # a folder, or "off" to disable the scan cache
SCAN_CACHE_HEADER = "# dmlbench image-scan cache v1"
SCAN_CHUNK = 64  # files per thread task of the scan

FileStamp = tuple[int, int]  # (st_size, st_mtime_ns): a cached verdict holds only while both are unchanged


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


def cache_dir() -> Path | None:
    """Where dmlbench keeps caches: $DMLBENCH_CACHE_DIR, else $XDG_CACHE_HOME/dmlbench, else
    ~/.cache/dmlbench; None when DMLBENCH_CACHE_DIR is "off"."""
    chosen = os.environ.get(CACHE_DIR_ENV, "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dmlbench"


def scan_cache_path(root: str | Path) -> Path | None:
    """The scan-cache file of one dataset root (one file per resolved root), or None when caching is off."""
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return folder / f"image-scan-{digest}.tsv"


def read_scan_cache(path: Path, root: Path) -> dict[str, FileStamp]:
    """Relative path -> stamp of files verified good. Anything unreadable or malformed counts as empty:
    the cache only ever saves work, so a bad cache file must never fail a run."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    lines = text.split("\n")  # not splitlines(): a path may hold \r or other line-break characters
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != f"{SCAN_CACHE_HEADER}\t{Path(root).resolve()}":
        return {}  # not ours, an older format, or (vanishingly unlikely) another root with the same hash
    entries: dict[str, FileStamp] = {}
    for line in lines[1:]:
        fields = line.split("\t", 2)  # the path comes last, so a tab inside it survives
        if len(fields) != 3 or not fields[2]:
            return {}  # a corrupt line: trust nothing in the file
        try:
            entries[fields[2]] = (int(fields[0]), int(fields[1]))
        except ValueError:
            return {}
    return entries


def write_scan_cache(path: Path, root: Path, good: dict[str, FileStamp], bad: Sequence[str] = ()) -> None:
    """Merge `good` into the cache file and drop `bad`, atomically; errors are logged, never raised.

    Several sweep cells may scan the same root at once: re-reading just before the write keeps their
    entries; a lost race loses only entries (re-verified next time), never admits a bad file.
    """
    try:
        entries = read_scan_cache(path, root)
        entries.update(good)
        for rel in bad:
            entries.pop(rel, None)
        rows = [f"{size}\t{mtime_ns}\t{rel}" for rel, (size, mtime_ns) in sorted(entries.items())]
        atomic_write_text(path, "\n".join([f"{SCAN_CACHE_HEADER}\t{Path(root).resolve()}", *rows]) + "\n")
    except OSError as err:
        logger.warning("image-scan cache not written (%s): %s", path, err)


def _stamp(path: Path) -> FileStamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def scan_images(
    root: str | Path,
    paths: Sequence[str],
    progress: bool = True,
    workers: int | None = None,
    *,
    use_cache: bool = True,
) -> list[tuple[str, str]]:
    """Fully decode every image; return (relative path, reason) for each one that fails, in input order.

    Threads overlap the decoding (PIL releases the GIL while decoding). With ``use_cache`` (and
    DMLBENCH_CACHE_DIR not "off"), files already verified good with the same size and mtime are only
    stat()ed; bad files are never cached, so they are decoded (and reported) every time.
    """
    root = Path(root)
    workers = workers or min(8, os.cpu_count() or 1)
    from tqdm import tqdm  # only needed when scanning

    cache_file = scan_cache_path(root) if use_cache else None
    cached = read_scan_cache(cache_file, root) if cache_file is not None else {}

    Probe = tuple[str | None, FileStamp | None, bool]  # (problem, stamp taken before decoding, decoded?)

    def probe(rel: str) -> Probe:
        # Stamp first: if the file changes during the decode, the next scan sees a new stamp.
        stamp = _stamp(root / rel)
        if stamp is not None and cached.get(rel) == stamp:
            return None, stamp, False
        return image_problem(root / rel), stamp, True

    def probe_chunk(chunk: Sequence[str]) -> list[Probe]:
        return [probe(rel) for rel in chunk]

    # Explicit chunks: ThreadPoolExecutor.map ignores `chunksize`, and one future per file costs more
    # than the stat() of a cached file.
    chunks = [paths[i : i + SCAN_CHUNK] for i in range(0, len(paths), SCAN_CHUNK)]
    results: list[Probe] = []
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(paths), desc="checking images", unit="img", disable=not progress, leave=False) as bar,
    ):
        for chunk_results in pool.map(probe_chunk, chunks):
            results.extend(chunk_results)
            bar.update(len(chunk_results))
    if cache_file is not None:
        newly_good = {
            rel: stamp
            for rel, (reason, stamp, decoded) in zip(paths, results, strict=True)
            if decoded and reason is None and stamp is not None and "\n" not in rel
        }
        bad_cached = [rel for rel, (reason, _, _) in zip(paths, results, strict=True) if reason and rel in cached]
        if newly_good or bad_cached:
            write_scan_cache(cache_file, root, newly_good, bad_cached)
    return [(rel, reason) for rel, (reason, _, _) in zip(paths, results, strict=True) if reason is not None]


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


def build_transform(
    image_size: int, train: bool, normalization: Normalization = IMAGENET_NORMALIZATION
) -> Callable[[Image.Image], torch.Tensor]:
    """Train: random resized crop (scale 0.9-1.0) + horizontal flip, as SGML. Eval: resize + centre crop.

    ``normalization``: the input scaling the backbone's pretrained weights were trained with.
    """
    normalize = transforms.Normalize(*normalization)
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
