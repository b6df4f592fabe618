"""Stanford Online Products loader: fixtures in the Ebay_*.txt format and the real README rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.datasets import SOP_SUPER, make_sop
from support.paths import SHARED_DATA

from dmlbench.data import DatasetError
from dmlbench.data.sop import load_sop
from dmlbench.data.splits import split_summary

REAL = SHARED_DATA / "sop"
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark


def test_index_splits_labels_and_protocol(tmp_path: Path) -> None:
    make_sop(tmp_path)
    index = load_sop(tmp_path)
    assert index.protocol == "leave-one-out" and index.ks == (1, 10, 100, 1000)
    train_rows = (tmp_path / "Ebay_train.txt").read_text().splitlines()[1:]
    test_rows = (tmp_path / "Ebay_test.txt").read_text().splitlines()[1:]
    assert index.paths == [r.split()[3] for r in train_rows + test_rows]
    assert index.labels.tolist() == [int(r.split()[1]) for r in train_rows + test_rows]
    assert split_summary(index)["train"]["classes"] == 6 and split_summary(index)["test"]["classes"] == 6
    assert all((tmp_path / p).is_file() for p in index.paths)


def test_super_class_is_a_documented_one_hot_attribute(tmp_path: Path) -> None:
    make_sop(tmp_path, images=False)
    index = load_sop(tmp_path)
    assert index.attributes is not None and index.attributes.shape == (len(index), 3)
    assert np.array_equal(index.attributes.sum(axis=1), np.ones(len(index)))
    assert index.attribute_names == [SOP_SUPER[k] for k in sorted(SOP_SUPER)]
    assert index.groups is not None and np.array_equal(index.attributes.argmax(axis=1), index.groups)
    for path, g in zip(index.paths, index.groups.tolist(), strict=True):
        assert path.startswith(index.attribute_names[g] + "_final/")
    assert any("one-hot super-class" in n for n in index.notes)
    assert load_sop(tmp_path, super_class_attributes=False).attributes is None


def test_subset_like_the_sop_report_is_deterministic_and_stated(tmp_path: Path) -> None:
    make_sop(tmp_path, images=False, train_classes=30, test_classes=30)
    a = load_sop(tmp_path, subset=20, seed=5)
    b = load_sop(tmp_path, subset=20, seed=5)
    assert a.paths == b.paths
    assert int((a.splits == "train").sum()) == 20 and int((a.splits == "test").sum()) == 20
    assert sum(n.startswith("SUBSET (not the full benchmark): 20 of") for n in a.notes) == 2
    assert load_sop(tmp_path, subset=20, seed=6).paths != a.paths


def test_header_and_rows_are_checked(tmp_path: Path) -> None:
    make_sop(tmp_path, images=False)
    train = tmp_path / "Ebay_train.txt"
    lines = train.read_text().splitlines()
    train.write_text("\n".join([lines[0], lines[1] + " extra", *lines[2:]]) + "\n")
    with pytest.raises(DatasetError, match=r"Ebay_train.txt line 2: expected 4 columns"):
        load_sop(tmp_path)
    test = tmp_path / "Ebay_test.txt"
    train.write_text("\n".join(lines) + "\n")
    test.write_text(test.read_text() + "999 1 1 bicycle_final/x.JPG\n")  # class 1 is a training class
    with pytest.raises(DatasetError, match="occur in both Ebay_train.txt and Ebay_test.txt"):
        load_sop(tmp_path)


def test_real_readme_rows_parse(tmp_path: Path) -> None:
    excerpt = REAL / "Ebay_info.README_excerpt.txt"
    if not excerpt.is_file():
        pytest.skip(f"real SOP sample files not present under {REAL}")
    shutil.copy(excerpt, tmp_path / "Ebay_train.txt")
    (tmp_path / "Ebay_test.txt").write_text(
        "image_id class_id super_class_id path\n4 2 1 bicycle_final/111265328556_0.JPG\n"
    )
    index = load_sop(tmp_path)
    assert index.paths[:3] == [f"bicycle_final/111085122871_{k}.JPG" for k in range(3)]
    assert index.attribute_names == ["bicycle"]
    assert any(n.startswith("partial SOP") for n in index.notes)


def test_real_tfds_fixture_with_a_cut_header_is_rejected_clearly(tmp_path: Path) -> None:
    fake = REAL / "Ebay_test.tfds_fake_example.txt"
    if not fake.is_file():
        pytest.skip(f"real SOP sample files not present under {REAL}")
    make_sop(tmp_path, images=False)
    shutil.copy(fake, tmp_path / "Ebay_test.txt")
    with pytest.raises(DatasetError, match=r"Ebay_test.txt line 1: expected the header 'image_id class_id"):
        load_sop(tmp_path)


def test_real_rows_saved_with_a_bom_parse(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (Windows editors write one) before the header is not part of it."""
    excerpt = REAL / "Ebay_info.README_excerpt.txt"
    if not excerpt.is_file():
        pytest.skip(f"real SOP sample files not present under {REAL}")
    (tmp_path / "Ebay_train.txt").write_bytes(BOM + excerpt.read_bytes())
    (tmp_path / "Ebay_test.txt").write_bytes(
        BOM + b"image_id class_id super_class_id path\n4 2 1 bicycle_final/111265328556_0.JPG\n"
    )
    index = load_sop(tmp_path)
    assert index.paths[:3] == [f"bicycle_final/111085122871_{k}.JPG" for k in range(3)]
