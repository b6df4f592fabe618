"""In-Shop loader: generated fixtures in the official format, and conformance on the real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.datasets import INSHOP_ATTRIBUTE_NAMES, make_inshop
from support.paths import SHARED_DATA

from dmlbench.data import DATASETS, DatasetError
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.inshop import load_inshop
from dmlbench.data.scan import check_images_or_raise
from dmlbench.data.splits import split_summary
from dmlbench.data.transforms import build_transform

REAL = SHARED_DATA / "inshop"
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark


def test_fixture_index_matches_the_partition_file(tmp_path: Path) -> None:
    fx = make_inshop(tmp_path)
    index = load_inshop(tmp_path)
    assert index.protocol == "query-gallery" and index.ks == (1, 10, 20, 30, 40, 50)
    assert index.paths == [name for name, _, _ in fx.rows]  # padded columns parsed; img/ kept
    assert index.labels.tolist() == [int(item[3:]) for _, item, _ in fx.rows]
    assert index.splits.tolist() == [status for _, _, status in fx.rows]
    assert split_summary(index) == {
        "train": {"images": 11, "classes": 4},
        "query": {"images": 6, "classes": 3},
        "gallery": {"images": 5, "classes": 3},
    }


def test_item_under_two_folders_keeps_one_label_and_one_group(tmp_path: Path) -> None:
    make_inshop(tmp_path)
    index = load_inshop(tmp_path)
    item3 = index.labels == 3
    folders = {p.split("/")[1] + "/" + p.split("/")[2] for p in np.array(index.paths)[item3]}
    assert folders == {"MEN/Denim", "WOMEN/Denim"}
    assert len(set(index.groups[item3].tolist())) == 1
    # Group = the alphabetically first folder: item 3 shares its group with item 6 (MEN/Denim only).
    assert index.groups[item3][0] == index.groups[index.labels == 6][0]
    # Item 7 (WOMEN/Skirts + WOMEN/Dresses) joins WOMEN/Dresses, like item 1.
    assert index.groups[index.labels == 7][0] == index.groups[index.labels == 1][0]
    assert any("2 items appear under two category folders" in n for n in index.notes)


def test_attributes_are_the_items_vectors_in_0_1(tmp_path: Path) -> None:
    fx = make_inshop(tmp_path)
    index = load_inshop(tmp_path)
    assert index.attribute_names == INSHOP_ATTRIBUTE_NAMES  # "floral print": multi-word name kept whole
    assert index.attributes is not None and index.attributes.dtype == np.float32
    for i, (_, item, _) in enumerate(fx.rows):
        expected = [(v + 1) / 2 for v in fx.attributes[item]]
        assert index.attributes[i].tolist() == expected


def test_attribute_names_under_anno_attributes_and_optional_files(tmp_path: Path) -> None:
    make_inshop(tmp_path / "a", attr_cloth_under_attributes_dir=True)
    assert load_inshop(tmp_path / "a").attribute_names == INSHOP_ATTRIBUTE_NAMES
    make_inshop(tmp_path / "b", attributes=False)
    index = load_inshop(tmp_path / "b")
    assert index.attributes is None and index.num_attributes == 0
    assert any("list_attr_items.txt not found" in n for n in index.notes)
    assert load_inshop(tmp_path / "a", attributes=False).attributes is None


def test_bboxes_only_with_crop_option(tmp_path: Path) -> None:
    make_inshop(tmp_path)
    assert load_inshop(tmp_path).bboxes is None
    index = load_inshop(tmp_path, crop_bboxes=True)
    assert index.bboxes is not None
    assert index.bboxes[0].tolist() == [2, 1, 8, 7]  # x1 y1 x2 y2 = 2 1 10 8 -> x y w h


def test_count_line_mismatch_names_file_and_line(tmp_path: Path) -> None:
    make_inshop(tmp_path, images=False)
    part = tmp_path / "Eval" / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:-1]) + "\n")  # a truncated download: one row short
    with pytest.raises(DatasetError, match=r"list_eval_partition.txt line 1: says 22 data rows but the file has 21"):
        load_inshop(tmp_path)


def test_malformed_rows_raise_with_line_number(tmp_path: Path) -> None:
    make_inshop(tmp_path, images=False)
    part = tmp_path / "Eval" / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    lines[4] = lines[4].replace("train", "training")
    part.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 5: evaluation status .* 'training'"):
        load_inshop(tmp_path)
    lines[4] = "img/WOMEN/x.jpg id_00000001"
    part.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 5: expected 3 columns, found 2"):
        load_inshop(tmp_path)


def test_image_dir_falls_back_to_img_highres(tmp_path: Path) -> None:
    make_inshop(tmp_path)
    (tmp_path / "img").rename(tmp_path / "img_highres")
    index = load_inshop(tmp_path)
    assert all(p.startswith("img_highres/") for p in index.paths)
    assert (tmp_path / index.paths[2]).is_file()


def test_bad_images_stop_the_run_or_are_excluded_and_counted(tmp_path: Path) -> None:
    fx = make_inshop(tmp_path)
    index = load_inshop(tmp_path)
    everything = np.arange(len(index))
    with pytest.raises(DatasetError) as err:
        check_images_or_raise(index, everything, skip_bad=False, log=print, progress=False)
    assert f"{fx.truncated} (truncated)" in str(err.value) and f"{fx.missing} (missing)" in str(err.value)
    logged: list[str] = []
    kept = check_images_or_raise(index, everything, skip_bad=True, log=logged.append, progress=False)
    assert len(kept) == len(index) - 2 and "excluded 2 unreadable images" in logged[0]
    # Grayscale and CMYK files decode to 3-channel tensors.
    data = ImageDataset(index, kept, build_transform(8, train=False))
    grey_pos = index.paths.index(fx.grayscale)
    cmyk_pos = index.paths.index(fx.cmyk)
    assert data[int(np.flatnonzero(kept == grey_pos)[0])][0].shape == (3, 8, 8)
    assert data[int(np.flatnonzero(kept == cmyk_pos)[0])][0].shape == (3, 8, 8)


def test_validation_and_subset_are_whole_training_classes(tmp_path: Path) -> None:
    make_inshop(tmp_path, images=False)
    index = load_inshop(tmp_path, val_classes=0.5, seed=3)
    val, train = set(index.labels[index.splits == "val"].tolist()), set(index.labels[index.splits == "train"].tolist())
    assert len(val) == 2 and not val & train and val | train == {1, 2, 3, 4}
    assert load_inshop(tmp_path, val_classes=0.5, seed=3).splits.tolist() == index.splits.tolist()  # deterministic
    small = load_inshop(tmp_path, subset=5, seed=1)
    assert int((small.splits == "train").sum()) == 5
    assert int(np.isin(small.splits, ("query", "gallery")).sum()) == 5
    assert any(n.startswith("SUBSET (not the full benchmark): 5 of 11 train images") for n in small.notes)


def test_registered_and_listed_options() -> None:
    assert DATASETS.get("inshop") is load_inshop
    params = DATASETS.params("inshop")
    assert params["image_dir"] == "auto" and params["attributes"] is True and params["crop_bboxes"] is False


# ------------------------------------------------------------------ conformance on the real files


def _real_inshop_root(tmp_path: Path, partition: str) -> Path:
    if not (REAL / partition).is_file():
        pytest.skip(f"real In-Shop sample files not present under {REAL}")
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Anno" / "attributes").mkdir(parents=True)
    shutil.copy(REAL / partition, tmp_path / "Eval" / "list_eval_partition.txt")
    shutil.copy(REAL / "list_attr_cloth.txt", tmp_path / "Anno" / "attributes" / "list_attr_cloth.txt")
    return tmp_path


def test_real_full_partition_has_the_official_counts(tmp_path: Path) -> None:
    root = _real_inshop_root(tmp_path, "list_eval_partition.RECONSTRUCTED.txt")
    index = load_inshop(root)
    summary = split_summary(index)
    assert summary["train"] == {"images": 25_882, "classes": 3_997}
    assert summary["query"]["images"] == 14_218 and summary["gallery"]["images"] == 12_612
    assert len(np.unique(index.labels[np.isin(index.splits, ("query", "gallery"))])) == 3_985
    assert any(n.startswith("99 items appear under two category folders") for n in index.notes)
    assert len(np.unique(index.groups)) >= 17  # WOMEN/* and MEN/* clothing folders
    # Every item of the official item list is used, and nothing else.
    items = (REAL / "list_item_inshop.txt").read_text().split()
    assert int(items[0]) == 7_982
    assert set(np.unique(index.labels).tolist()) == {int(i[3:]) for i in items[1:]}


def test_real_full_partition_with_a_changed_split_is_rejected(tmp_path: Path) -> None:
    root = _real_inshop_root(tmp_path, "list_eval_partition.RECONSTRUCTED.txt")
    part = root / "Eval" / "list_eval_partition.txt"
    text = part.read_text()
    # Move one gallery image to query: still 52,712 rows, but no longer the official split.
    head, tail = text.split(" gallery\n", 1)
    part.write_text(head + " query\n" + tail)
    with pytest.raises(DatasetError, match=r"query images 14219 \(official 14218\); gallery images 12611"):
        load_inshop(root)


def test_real_attribute_names(tmp_path: Path) -> None:
    if not (REAL / "list_attr_cloth.txt").is_file():
        pytest.skip(f"real In-Shop sample files not present under {REAL}")
    from dmlbench.data.inshop import read_attribute_names

    (tmp_path / "Anno").mkdir()
    shutil.copy(REAL / "list_attr_cloth.txt", tmp_path / "Anno" / "list_attr_cloth.txt")
    names = read_attribute_names(tmp_path)
    assert names is not None and len(names) == 463
    assert names[:3] == ["lightweight", "polyester", "woven"]
    assert any(" " in n for n in names)  # multi-word names survive


def test_real_first_rows_partition_is_partial_not_asserted(tmp_path: Path) -> None:
    root = _real_inshop_root(tmp_path, "list_eval_partition.RECONSTRUCTED.first200.txt")
    part = root / "Eval" / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(["200", *lines[1:]]) + "\n")  # the cut file keeps the full count: fix it
    index = load_inshop(root)
    assert len(index) == 200 and any("counts not asserted" in n for n in index.notes)
    part.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="says 52712 data rows but the file has 200"):
        load_inshop(root)


def test_real_partition_saved_with_a_bom_loads_the_same(tmp_path: Path) -> None:
    """Windows editors prepend a UTF-8 byte-order mark when they re-save a list."""
    root = _real_inshop_root(tmp_path, "list_eval_partition.RECONSTRUCTED.txt")
    plain = load_inshop(root)
    for rel in ("Eval/list_eval_partition.txt", "Anno/attributes/list_attr_cloth.txt"):
        path = root / rel
        path.write_bytes(BOM + path.read_bytes())
    with_bom = load_inshop(root)
    assert with_bom.paths == plain.paths and with_bom.splits.tolist() == plain.splits.tolist()
    assert with_bom.attribute_names == plain.attribute_names
