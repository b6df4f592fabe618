"""CUB-200-2011 loader: generated fixtures (malformed attribute rows, ...) and the real sample files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.datasets import make_cub
from support.paths import SHARED_DATA

from dmlbench.data import DatasetError
from dmlbench.data.cub import load_cub
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.scan import check_images_or_raise
from dmlbench.data.splits import split_summary
from dmlbench.data.transforms import build_transform

REAL = SHARED_DATA / "cub_200_2011_subset"
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark


def test_dml_split_is_by_class_not_train_test_split(tmp_path: Path) -> None:
    fx = make_cub(tmp_path)
    index = load_cub(tmp_path)  # the parent of CUB_200_2011/ is accepted
    assert index.root == fx.root and index.protocol == "leave-one-out" and index.ks == (1, 2, 4, 8, 16, 32)
    assert index.labels.tolist() == fx.labels
    assert index.splits.tolist() == ["train" if c <= 100 else "test" for c in fx.labels]
    assert split_summary(index) == {"train": {"images": 6, "classes": 3}, "test": {"images": 7, "classes": 3}}
    assert all((fx.root / p).is_file() for p in index.paths)
    assert any("lists 1 image ids that images.txt does not" in n for n in index.notes)


def test_malformed_attribute_rows_are_repaired_and_counted(tmp_path: Path) -> None:
    fx = make_cub(tmp_path)
    index = load_cub(fx.root)
    assert index.attributes is not None and index.attributes.shape == (13, 312)
    expected = np.zeros((13, 312), dtype=np.float32)
    for (image_id, attr), (present, _certainty) in fx.present.items():
        expected[fx.image_ids.index(image_id), attr - 1] = present
    assert np.array_equal(index.attributes, expected)
    assert f"repaired {fx.malformed_rows} malformed rows with an extra column" in " ".join(index.notes)
    assert index.attribute_names is not None and index.attribute_names[0] == "has_part::value_1"


def test_certainty_threshold(tmp_path: Path) -> None:
    fx = make_cub(tmp_path)
    index = load_cub(fx.root, min_certainty=3)
    assert index.attributes is not None
    for (image_id, attr), (present, certainty) in fx.present.items():
        want = float(present == 1 and certainty >= 3)
        assert index.attributes[fx.image_ids.index(image_id), attr - 1] == want, (image_id, attr)
    with pytest.raises(DatasetError, match="min_certainty must be 1-4"):
        load_cub(fx.root, min_certainty=5)


def test_bad_attribute_rows_raise_with_line_number(tmp_path: Path) -> None:
    fx = make_cub(tmp_path, images=False)
    path = fx.root / "attributes" / "image_attribute_labels.txt"
    lines = path.read_text().splitlines()
    lines[9] = "1 10 7 2 1.5"  # is_present 7
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"image_attribute_labels.txt line 10: is_present must be 0/1"):
        load_cub(fx.root)
    lines[9] = "1 10 1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 10: expected 5 columns, found 3"):
        load_cub(fx.root)


def test_missing_class_row_and_bad_ids(tmp_path: Path) -> None:
    fx = make_cub(tmp_path, images=False, attributes=False)
    labels_file = fx.root / "image_class_labels.txt"
    lines = labels_file.read_text().splitlines()
    labels_file.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetError, match="image_class_labels.txt has no class for image id 1"):
        load_cub(fx.root)
    labels_file.write_text("\n".join([lines[0], lines[0], *lines[1:]]) + "\n")
    with pytest.raises(DatasetError, match=r"line 2: image id 1 appears twice"):
        load_cub(fx.root)


def test_bbox_crop_and_single_image_class(tmp_path: Path) -> None:
    fx = make_cub(tmp_path, attributes=False)
    index = load_cub(fx.root, crop_bboxes=True)
    assert index.bboxes is not None and index.bboxes[0].tolist() == [1.0, 2.0, 6.0, 5.0]
    _, counts = np.unique(index.labels[index.splits == "train"], return_counts=True)
    assert 1 in counts.tolist()  # class 3 has one image and still loads
    x, pos = ImageDataset(index, np.array([4]), build_transform(8, train=False))[0]
    assert pos == 4 and x.shape == (3, 8, 8)
    assert load_cub(fx.root).bboxes is None  # boxes attached only when cropping is asked for


def test_validation_from_training_classes_and_train_classes_option(tmp_path: Path) -> None:
    fx = make_cub(tmp_path, images=False, attributes=False)
    index = load_cub(fx.root, val_classes=0.34, seed=0)
    val = set(index.labels[index.splits == "val"].tolist())
    assert len(val) == 1 and val <= {1, 2, 3}
    assert not val & set(index.labels[index.splits == "train"].tolist())
    index = load_cub(fx.root, train_classes=2)
    assert set(index.labels[index.splits == "train"].tolist()) == {1, 2}
    assert any("NON-STANDARD split" in n for n in index.notes)


# ------------------------------------------------------------------ conformance on the real files


def _need_real() -> Path:
    if not (REAL / "CUB_200_2011" / "images.txt").is_file():
        pytest.skip(f"real CUB sample not present under {REAL}")
    return REAL / "CUB_200_2011"


def test_real_sample_classes_1_to_10() -> None:
    cub = _need_real()
    index = load_cub(cub, train_classes=5)
    assert len(index) == 543  # images.txt of the sample = all images of classes 001-010
    assert sorted(np.unique(index.labels).tolist()) == list(range(1, 11))
    assert split_summary(index) == {"train": {"images": 282, "classes": 5}, "test": {"images": 261, "classes": 5}}
    assert index.paths[0] == "images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert any("partial CUB: 543 images" in n for n in index.notes)
    with pytest.raises(DatasetError, match="no test split; .* set data.options.train_classes"):
        load_cub(cub)  # the standard split has no test class in a 10-class sample


def test_real_sample_images_decode_and_missing_ones_are_reported() -> None:
    cub = _need_real()
    index = load_cub(cub, train_classes=5, crop_bboxes=True)
    picked = {line.strip() for line in (REAL / "PICKED_IMAGES.txt").read_text().splitlines() if line.strip()}
    logged: list[str] = []
    kept = check_images_or_raise(index, np.arange(len(index)), skip_bad=True, log=logged.append, progress=False)
    assert len(kept) == 40 and "excluded 503 unreadable images" in logged[0]
    assert all(any(index.paths[k].endswith(p.split("/", 1)[-1]) for p in picked) for k in kept)
    data = ImageDataset(index, kept, build_transform(16, train=False))
    for i in range(len(data)):
        x, _ = data[i]
        assert x.shape == (3, 16, 16) and bool(x.isfinite().all())


def test_real_image_class_labels_give_the_official_split_counts(tmp_path: Path) -> None:
    """images.txt of the sample is cut, but image_class_labels.txt is whole: a full-size images.txt
    built over it must give exactly 5,864 train / 5,924 test images."""
    cub = _need_real()
    root = tmp_path / "CUB_200_2011"
    root.mkdir()
    for name in ("image_class_labels.txt", "classes.txt"):
        shutil.copy(cub / name, root / name)
    ids = [line.split()[0] for line in (cub / "image_class_labels.txt").read_text().splitlines() if line.strip()]
    (root / "images.txt").write_text("".join(f"{i} x/{i}.jpg\n" for i in ids))
    index = load_cub(root)
    assert split_summary(index) == {"train": {"images": 5864, "classes": 100}, "test": {"images": 5924, "classes": 100}}
    assert not any("partial" in n for n in index.notes)
    # A changed class of one image with the full list is caught and explained.
    text = (root / "image_class_labels.txt").read_text().replace("\n1 1\n", "\n1 101\n", 1)
    (root / "image_class_labels.txt").write_text(("1 101\n" + text.split("\n", 1)[1]) if text.startswith("1 1\n") else text)
    with pytest.raises(DatasetError, match=r"5863 train / 5925 test images \(official 5864 / 5924\)"):
        load_cub(root)


def test_real_lists_saved_with_a_bom_load_the_same(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (Windows editors write one) before images.txt's first id is not part of it."""
    cub = _need_real()
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(cub, root, ignore=shutil.ignore_patterns("images"))
    plain = load_cub(root, train_classes=5)
    for name in ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt"):
        (root / name).write_bytes(BOM + (root / name).read_bytes())
    with_bom = load_cub(root, train_classes=5)
    assert with_bom.paths == plain.paths and with_bom.labels.tolist() == plain.labels.tolist()
