"""Image decoding: every mode becomes RGB, bad files are found by a full decode and never pass silently."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.datasets import write_image, write_truncated_jpeg
from support.paths import SHARED_DATA

import dmlbench.data.scan as scan_module
from dmlbench.data import DatasetError
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.images import load_rgb
from dmlbench.data.scan import check_images_or_raise, scan_images
from dmlbench.data.scan_cache import cache_dir, scan_cache_path
from dmlbench.data.splits import build_index
from dmlbench.data.transforms import build_transform


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "P", "RGBA", "LA", "1"])
def test_every_mode_loads_as_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"x_{mode}.img"
    write_image(path, mode, size=(7, 5))
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (7, 5)


def test_cmyk_jpeg_keeps_its_colours(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # a red square
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = np.asarray(load_rgb(tmp_path / "c.jpg")).astype(int)
    assert abs(out[..., 0].mean() - 200) < 8 and out[..., 1:].mean() < 8


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "g16.png"))[0, :, 0]
    assert out.tolist() == [0, 128, 255]


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # black, fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.asarray(load_rgb(tmp_path / "a.png")).min() == 255


def test_real_grayscale_cub_image_loads_as_rgb() -> None:
    path = SHARED_DATA / "cub_200_2011_subset/CUB_200_2011/images/009.Brewer_Blackbird/Brewer_Blackbird_0028_2682.jpg"
    if not path.is_file():
        pytest.skip(f"shared data sample not present: {path}")
    assert Image.open(path).mode == "L"
    img = load_rgb(path)
    arr = np.asarray(img)
    assert img.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all()


def test_scan_finds_truncated_missing_and_garbage(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.jpg")
    write_image(tmp_path / "grey.jpg", "L")
    write_truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    # PIL's verify() alone accepts the truncated file: the scan must decode.
    with Image.open(tmp_path / "cut.jpg") as img:
        img.verify()
    bad = scan_images(tmp_path, ["ok.jpg", "cut.jpg", "gone.jpg", "grey.jpg", "junk.jpg"], progress=False)
    assert [p for p, _ in bad] == ["cut.jpg", "gone.jpg", "junk.jpg"]
    reasons = dict(bad)
    assert reasons["cut.jpg"] == "truncated" and reasons["gone.jpg"] == "missing"
    assert reasons["junk.jpg"].startswith("unreadable")


def _tiny_index(root: Path, names: list[str], bboxes: np.ndarray | None = None):
    n = len(names)
    return build_index(
        name="tiny",
        root=root,
        paths=names,
        labels=np.arange(n) // 2,
        splits=np.array(["train"] * (n - 2) + ["test"] * 2, dtype=object),
        protocol="leave-one-out",
        ks=(1,),
        bboxes=bboxes,
    )


def test_check_images_raises_with_list_or_skips_with_log(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        write_image(tmp_path / name)
    write_truncated_jpeg(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").unlink()
    index = _tiny_index(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    positions = np.arange(4)
    with pytest.raises(DatasetError) as err:
        check_images_or_raise(index, positions, skip_bad=False, log=print, progress=False)
    message = str(err.value)
    assert "b.jpg (truncated)" in message and "c.jpg (missing)" in message
    assert "set data.skip_bad_images=true to exclude them" in message

    logged: list[str] = []
    kept = check_images_or_raise(index, positions, skip_bad=True, log=logged.append, progress=False)
    assert kept.tolist() == [0, 3]
    assert len(logged) == 1 and "excluded 2 unreadable images" in logged[0] and "b.jpg" in logged[0]


def test_many_bad_images_are_listed_first_20_plus_count(tmp_path: Path) -> None:
    names = [f"m{i:02d}.jpg" for i in range(25)]
    index = _tiny_index(tmp_path, names)
    with pytest.raises(DatasetError, match=r"25 of 25 images .* and 5 more"):
        check_images_or_raise(index, np.arange(25), skip_bad=False, log=print, progress=False)


def test_transforms_shapes_and_normalisation() -> None:
    img = Image.new("RGB", (40, 30), (124, 116, 104))  # ~ImageNet mean colour
    train = build_transform(16, train=True)(img)
    evaluation = build_transform(16, train=False)(img)
    assert train.shape == evaluation.shape == (3, 16, 16)
    assert evaluation.abs().max() < 0.05  # mean colour normalises to ~0
    torch.manual_seed(0)
    diagonal = Image.fromarray(np.eye(8, dtype=np.uint8) * 255).convert("RGB")
    augment = build_transform(8, train=True)
    flips = {tuple(augment(diagonal).flatten()[:3].tolist()) for _ in range(20)}
    assert len(flips) > 1  # random augmentation actually varies


def test_image_dataset_returns_position_and_crops_boxes(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[5:15, 10:20] = 255  # white box inside black
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.fromarray(rgb).save(tmp_path / name)
    boxes = np.array([[10, 5, 10, 10]] * 4, dtype=np.float32)
    index = _tiny_index(tmp_path, ["a.png", "b.png", "c.png", "d.png"], bboxes=boxes)
    to_tensor = build_transform(8, train=False)
    cropped = ImageDataset(index, np.array([2, 3]), to_tensor)  # the index carries boxes: crop
    whole = ImageDataset(index, np.array([2, 3]), to_tensor, crop_bboxes=False)
    x, pos = cropped[1]
    assert pos == 3 and x.shape == (3, 8, 8)
    assert x.min() > 2.0  # all white after normalisation (~2.2-2.6)
    assert whole[0][0].min() < -1.5  # black border present


# ------------------------------------------------------------------------------ the image-scan cache


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Names of the files the scan really decodes (a spy around the real image_problem); the cache
    goes to a fresh folder of this test."""
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[str] = []
    real = scan_module.image_problem

    def spy(path: Path) -> str | None:
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(scan_module, "image_problem", spy)
    return seen


def _image_folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_image(data / "a.jpg", seed=1)
    write_image(data / "sub" / "b.png", "RGBA", seed=2)
    write_image(data / "c.jpg", "L", seed=3)
    write_truncated_jpeg(data / "cut.jpg")
    return data


NAMES = ["a.jpg", "sub/b.png", "c.jpg", "cut.jpg", "gone.jpg"]


def test_second_scan_decodes_only_the_bad_files(tmp_path: Path, decoded: list[str]) -> None:
    data = _image_folder(tmp_path)
    first = scan_images(data, NAMES, progress=False)
    assert first == [("cut.jpg", "truncated"), ("gone.jpg", "missing")]
    assert sorted(decoded) == ["a.jpg", "b.png", "c.jpg", "cut.jpg", "gone.jpg"]
    cache_file = scan_cache_path(data)
    assert cache_file is not None and cache_file.parent == tmp_path / "cache"
    assert cache_file.name.startswith("image-scan-") and cache_file.is_file()
    assert "cut.jpg" not in cache_file.read_text()  # only good files are cached

    decoded.clear()
    assert scan_images(data, NAMES, progress=False) == first
    assert sorted(decoded) == ["cut.jpg", "gone.jpg"]  # bad files are always re-decoded
    # The same folder reached through another spelling of its path shares the cache.
    decoded.clear()
    scan_images(tmp_path / "data" / "sub" / "..", ["a.jpg"], progress=False)
    assert decoded == []


def test_changed_cached_image_is_decoded_again_and_reported(tmp_path: Path, decoded: list[str]) -> None:
    data = _image_folder(tmp_path)
    assert scan_images(data, ["a.jpg", "c.jpg"], progress=False) == []
    # Truncation changes the size.
    raw = (data / "a.jpg").read_bytes()
    (data / "a.jpg").write_bytes(raw[: len(raw) // 2])
    # Garbage of the very same size: only the mtime tells (set explicitly, whatever the clock's grain).
    stat_c = (data / "c.jpg").stat()
    (data / "c.jpg").write_bytes(b"x" * stat_c.st_size)
    os.utime(data / "c.jpg", ns=(stat_c.st_atime_ns, stat_c.st_mtime_ns + 1_000_000_000))
    decoded.clear()
    bad = dict(scan_images(data, ["a.jpg", "c.jpg"], progress=False))
    assert sorted(decoded) == ["a.jpg", "c.jpg"]
    assert bad["a.jpg"] == "truncated" and bad["c.jpg"].startswith("unreadable")
    cache_file = scan_cache_path(data)
    assert cache_file is not None and "a.jpg" not in cache_file.read_text()  # stale entries dropped
    # A fixed file is picked up again.
    write_image(data / "a.jpg", seed=1)
    decoded.clear()
    assert [p for p, _ in scan_images(data, ["a.jpg", "c.jpg"], progress=False)] == ["c.jpg"]
    assert sorted(decoded) == ["a.jpg", "c.jpg"]


def test_scans_of_different_subsets_merge_into_one_cache(tmp_path: Path, decoded: list[str]) -> None:
    data = _image_folder(tmp_path)
    scan_images(data, ["a.jpg"], progress=False)
    scan_images(data, ["c.jpg", "sub/b.png"], progress=False)  # e.g. the eval split after the train split
    decoded.clear()
    assert scan_images(data, ["a.jpg", "sub/b.png", "c.jpg"], progress=False) == []
    assert decoded == []


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path, decoded: list[str]) -> None:
    data = _image_folder(tmp_path)
    cache_file = scan_cache_path(data)
    assert cache_file is not None
    cache_file.parent.mkdir(parents=True)
    for junk in (b"\xff\xfe garbage \x00", f"# dmlbench image-scan cache v1\t{data.resolve()}\nx\ty\ta.jpg\n".encode()):
        cache_file.write_bytes(junk)
        decoded.clear()
        assert scan_images(data, ["a.jpg", "c.jpg"], progress=False) == []
        assert sorted(decoded) == ["a.jpg", "c.jpg"]
    decoded.clear()
    assert scan_images(data, ["a.jpg", "c.jpg"], progress=False) == []
    assert decoded == []  # the rewritten cache is valid


def test_cache_off_and_unwritable_cache_folder(
    tmp_path: Path, decoded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _image_folder(tmp_path)
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", "off")
    assert cache_dir() is None and scan_cache_path(data) is None
    for _ in range(2):
        assert scan_images(data, ["a.jpg"], progress=False) == []
    assert decoded == ["a.jpg", "a.jpg"]
    assert not (tmp_path / "cache").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    # use_cache=False bypasses an enabled cache too.
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    scan_images(data, ["a.jpg"], progress=False, use_cache=False)
    assert not (tmp_path / "cache").exists()
    # A cache folder that cannot be created (a file is in the way) does not fail the scan.
    (tmp_path / "blocker").write_text("")
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "blocker" / "cache"))
    assert scan_images(data, ["a.jpg", "cut.jpg"], progress=False) == [("cut.jpg", "truncated")]


def test_cache_dir_follows_env_then_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", "OFF")
    assert cache_dir() is None
    monkeypatch.delenv("DMLBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dmlbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dmlbench"
    other = scan_cache_path(tmp_path / "other")
    assert other is not None and other != scan_cache_path(tmp_path / "data")
