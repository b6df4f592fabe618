"""synthshop: generation in the In-Shop format, determinism, overwrite rules, and readability by the loader."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlbench.cli import main as cli_main
from dmlbench.data import DATASETS, DatasetError
from dmlbench.data.synthshop import (
    CATEGORIES,
    COLOURS,
    MANIFEST,
    PARTIAL_MARKER,
    PATTERNS,
    SIZE_CLASSES,
    SIZES,
    SynthSize,
    attribute_names,
    generate_synthshop,
    plan_items,
    read_manifest,
)
from dmlbench.data.synthshop.render import _render_item


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthshop(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", seed=0, progress=False)


def read_rows(path: Path) -> tuple[int, str, list[list[str]]]:
    lines = path.read_text().splitlines()
    return int(lines[0]), lines[1], [line.split() for line in lines[2:]]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tiny_layout_and_partition(tiny: Path) -> None:
    count, header, rows = read_rows(tiny / "Eval" / "list_eval_partition.txt")
    assert header == "image_name item_id evaluation_status"
    assert count == len(rows) == 48 * 6
    # Padded columns like the original archive, not single spaces.
    assert "  " in (tiny / "Eval" / "list_eval_partition.txt").read_text().splitlines()[2]
    items_by_split: dict[str, set[str]] = defaultdict(set)
    status_by_item: dict[str, set[str]] = defaultdict(set)
    for name, item_id, status in rows:
        parts = name.split("/")
        assert parts[0] == "img" and parts[1] in ("MEN", "WOMEN") and parts[3] == item_id
        assert f"{parts[1]}/{parts[2]}" in {folder for _, folder in CATEGORIES}
        with Image.open(tiny / name) as image:
            assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"
        items_by_split["train" if status == "train" else "test"].add(item_id)
        status_by_item[item_id].add(status)
    assert len(items_by_split["train"]) == len(items_by_split["test"]) == 24
    assert not items_by_split["train"] & items_by_split["test"]
    for item_id in items_by_split["test"]:
        assert status_by_item[item_id] == {"query", "gallery"}
    assert len(list((tiny / "img").rglob("*.jpg"))) == count


def test_tiny_annotation_files(tiny: Path) -> None:
    names = attribute_names()
    cloth = (tiny / "Anno" / "list_attr_cloth.txt").read_text().splitlines()
    assert cloth[0] == str(len(names)) and cloth[1] == "attribute_name" and cloth[2:] == names
    count, header, rows = read_rows(tiny / "Anno" / "list_attr_items.txt")
    assert header == "item_id attribute_labels" and count == len(rows) == 48
    values = np.array([[int(v) for v in row[1:]] for row in rows])
    assert values.shape == (48, len(names)) and set(np.unique(values)) == {-1, 1}
    # One-hot blocks: exactly one +1 per block for every item.
    start = 0
    for width in (len(CATEGORIES), len(COLOURS), len(PATTERNS), len(COLOURS), len(SIZE_CLASSES)):
        assert ((values[:, start : start + width] == 1).sum(axis=1) == 1).all()
        start += width
    # Items share attributes: every category holds several items.
    assert np.bincount(values[:, : len(CATEGORIES)].argmax(axis=1)).min() >= 2
    item_lines = (tiny / "Anno" / "list_item_inshop.txt").read_text().splitlines()
    assert item_lines[0] == "48" and item_lines[1:] == [row[0] for row in rows]
    count, _, bboxes = read_rows(tiny / "Anno" / "list_bbox_inshop.txt")
    assert count == len(bboxes) == 48 * 6
    for row in bboxes:
        x1, y1, x2, y2 = map(int, row[3:])
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
    manifest = read_manifest(tiny)
    assert manifest is not None and manifest["size"] == "tiny" and manifest["num_images"] == 288
    assert not (tiny / PARTIAL_MARKER).exists()


def test_deterministic_and_seed_dependent(tiny: Path, tmp_path: Path) -> None:
    again = generate_synthshop(tmp_path / "again", size="tiny", seed=0, progress=False)
    assert tree_digest(again) == tree_digest(tiny)
    other = generate_synthshop(tmp_path / "other", size="tiny", seed=1, progress=False)
    assert tree_digest(other) != tree_digest(tiny)


def test_worker_count_does_not_change_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SIZES, "micro", SynthSize("micro", 6, (2, 3), 32))
    one = generate_synthshop(tmp_path / "one", size="micro", seed=3, progress=False, workers=1)
    two = generate_synthshop(tmp_path / "two", size="micro", seed=3, progress=False, workers=2)
    assert tree_digest(one) == tree_digest(two)


def test_refuses_foreign_folder_and_skips_finished_one(tiny: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a synthshop folder"):
        generate_synthshop(foreign, size="tiny", progress=False)
    assert cli_main(["data", "synth", str(foreign), "--size", "tiny", "--quiet"]) == 2
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    before = (tiny / MANIFEST).stat().st_mtime_ns
    assert cli_main(["data", "synth", str(tiny), "--size", "tiny", "--seed", "0"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (tiny / MANIFEST).stat().st_mtime_ns == before


def test_regenerates_interrupted_or_other_seed(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    (out / "img" / "junk").mkdir(parents=True)
    (out / PARTIAL_MARKER).write_text("")
    (out / "keep.txt").write_text("user file")
    generate_synthshop(out, size="tiny", seed=0, progress=False)
    assert not (out / "img" / "junk").exists() and (out / "keep.txt").exists()
    generate_synthshop(out, size="tiny", seed=2, progress=False)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["seed"] == 2
    assert len(list((out / "img").rglob("*.jpg"))) == 288


def test_same_category_items_look_alike() -> None:
    """Shape (category) is shared: silhouettes of same-category items overlap more than across."""
    items = plan_items(SIZES["tiny"], seed=0)
    masks = [np.asarray(_render_item(item, 0, i, 64)[0].getchannel("A")) > 127 for i, item in enumerate(items)]
    same, cross = [], []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            (same if items[i].category == items[j].category else cross).append(iou)
    assert np.mean(same) > np.mean(cross) + 0.15


def test_task_is_learnable_but_not_trivial(tiny: Path) -> None:
    """Nearest neighbour on raw pixels: clearly above chance, clearly below perfect."""
    _, _, rows = read_rows(tiny / "Eval" / "list_eval_partition.txt")

    def features(subset: list[list[str]]) -> np.ndarray:
        x = np.stack([
            np.asarray(Image.open(tiny / r[0]).convert("RGB").resize((32, 32)), dtype=np.float32).ravel()
            for r in subset
        ])
        x -= x.mean(axis=1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    query = [r for r in rows if r[2] == "query"]
    gallery = [r for r in rows if r[2] == "gallery"]
    nearest = (features(query) @ features(gallery).T).argmax(axis=1)
    recall_at_1 = np.mean([gallery[j][1] == query[i][1] for i, j in enumerate(nearest)])
    chance = 1 / len({r[1] for r in gallery})
    assert 2 * chance < recall_at_1 < 0.6


def test_inshop_loader_reads_it(tiny: Path) -> None:
    pytest.importorskip("dmlbench.data.inshop", reason="the In-Shop loader (bench/datasets/inshop.py) is not written yet")
    index = DATASETS.get("synthshop")(tiny)
    assert index.name == "synthshop" and index.protocol == "query-gallery"
    assert len(index) == 288
    train_items = set(index.labels[index.indices("train")].tolist())
    test_items = set(index.labels[index.indices("query")].tolist()) | set(index.labels[index.indices("gallery")].tolist())
    assert len(train_items) == len(test_items) == 24 and not train_items & test_items
    for label in test_items:
        assert (index.labels[index.indices("query")] == label).any()
        assert (index.labels[index.indices("gallery")] == label).any()
    assert index.attributes is not None and index.attributes.shape == (288, len(attribute_names()))
    assert set(np.unique(index.attributes).tolist()) == {0.0, 1.0}
    assert (index.attributes.sum(axis=1) == 5).all()  # one attribute on per block
    assert index.attribute_names == attribute_names()
    assert index.groups is not None and len(set(index.groups.tolist())) <= len(CATEGORIES)


def test_loader_rejects_unfinished_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dmlbench data synth"):
        DATASETS.get("synthshop")(tmp_path)


def test_large_plan_holds_many_test_items_in_galleries() -> None:
    # Pixel-free: the plan and the split rule the regression preset relies on.
    items = plan_items(SIZES["large"], seed=0)
    train = [item for item in items if item.split == "train"]
    assert len(items) == 3200 and len(train) == 640
    assert SIZES["large"].items_per_gallery == 320 and SIZES["medium"].items_per_gallery is None
    # Older sizes keep their split (byte-identical folders): half the items train, as before the field existed.
    assert sum(item.split == "train" for item in plan_items(SIZES["small"], seed=0)) == 120


def test_loader_scores_test_items_in_galleries_when_the_manifest_says_so(tiny: Path, tmp_path: Path) -> None:
    import json
    import shutil

    assert DATASETS.get("synthshop")(tiny).galleries is None  # tiny: one gallery, as In-Shop
    copy = tmp_path / "grouped"
    shutil.copytree(tiny, copy)
    manifest = json.loads((copy / "synthshop.json").read_text())
    manifest["preset"]["items_per_gallery"] = 5
    (copy / "synthshop.json").write_text(json.dumps(manifest))
    index = DATASETS.get("synthshop")(copy)
    assert index.galleries is not None
    test = np.isin(index.splits, ("query", "gallery"))
    assert (index.galleries[~test] == -1).all()
    items_by_group: dict[int, set[int]] = defaultdict(set)
    for label, group in zip(index.labels[test], index.galleries[test], strict=True):
        items_by_group[int(group)].add(int(label))
    assert [len(items_by_group[g]) for g in sorted(items_by_group)] == [5, 5, 5, 5, 4]  # 24 test items
    for group, members in items_by_group.items():  # an item's images never straddle two galleries
        assert all(set(index.galleries[index.labels == m].tolist()) == {group} for m in members)
    assert any("5 test items" in note for note in index.notes)
