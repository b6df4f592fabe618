"""synthshop generation: the folder rules (refuse foreign folders, regenerate stale ones), the
worker pool, and the files written in order with the manifest last."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from dmlbench.data.base import DatasetError
from dmlbench.data.synthshop.annotations import (
    CLOTHES_TYPE,
    POSE_TYPE,
    format_attr_cloth,
    format_attr_items,
    format_bboxes,
    format_item_list,
    format_partition,
)
from dmlbench.data.synthshop.plan import (
    CATEGORIES,
    SIZES,
    VIEWS,
    ItemSpec,
    attribute_names,
    plan_items,
    query_gallery_split,
)
from dmlbench.data.synthshop.render import render_item_images
from dmlbench.rundir import atomic_write_json, atomic_write_text

MANIFEST = "synthshop.json"
PARTIAL_MARKER = ".synthshop-partial"  # marks a folder whose generation started (possibly killed)
GENERATOR_VERSION = 1  # bump when the rendering changes: a folder with an older version is regenerated
OWNED_PATHS = ("img", "Anno", "Eval", MANIFEST, PARTIAL_MARKER)


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
    if not manifest:
        return False
    return manifest.get("generator") == "synthshop" and manifest.get("version") == GENERATOR_VERSION \
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
            bboxes.append((rel_path, CLOTHES_TYPE[shape], POSE_TYPE[VIEWS[k % len(VIEWS)][1]], bbox))

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
    from dmlbench.progress import progress_bar

    bar = progress_bar(total=total_images, unit="img", desc="synthshop", disable=not progress)
    results: list[list[tuple[str, tuple[int, int, int, int]]]] = []

    def collect(it: Iterator[list[tuple[str, tuple[int, int, int, int]]]]) -> None:
        for written in it:
            results.append(written)
            bar.update(len(written))

    try:
        if workers <= 1:
            collect(map(render_item_images, jobs))
        else:
            # imap keeps item order; each item seeds its own generators, so output is identical.
            # fork where the OS has it: spawn re-imports __main__, which fails for `python -` scripts.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                collect(pool.imap(render_item_images, jobs, chunksize=8))
    finally:
        bar.close()
    return results
