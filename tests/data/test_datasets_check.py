"""`dmlbench data check`: counts per split, attribute dimension, bad images, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.datasets import make_cub, make_inshop
from support.paths import SHARED_DATA

from dmlbench.cli import main as cli_main


def main(argv: list[str]) -> int:
    """`dmlbench data ...` in this process (so capsys sees its output)."""
    return cli_main(argv)


def _check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["data", "check", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_inshop_fixture_reports_bad_images_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fx = make_inshop(tmp_path)
    code, report = _check_json(capsys, str(tmp_path), "--dataset", "inshop")
    assert code == 1
    assert report["splits"]["train"] == {"images": 11, "classes": 4, "single_image_classes": 1}
    assert report["splits"]["query"] == {"images": 6, "classes": 3}
    assert report["attributes"] == 4 and report["protocol"] == "query-gallery"
    assert {b["path"]: b["reason"] for b in report["bad_images"]} == {fx.missing: "missing", fx.truncated: "truncated"}
    assert sorted(report["problems"]) == ["1 of 22 images missing (listed in bad_images)",
                                          "1 of 22 images truncated (listed in bad_images)"]


def test_no_images_checks_only_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_inshop(tmp_path)
    code, report = _check_json(capsys, str(tmp_path), "--dataset", "inshop", "--no-images")
    assert code == 0 and report["problems"] == [] and report["bad_images"] == []


def test_text_output_and_loader_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_cub(tmp_path)
    assert main(["data", "check", str(tmp_path), "--dataset", "cub", "-o", "min_certainty=4"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "attributes: 312" in out and out.rstrip().endswith("OK")
    assert "certainty >= 4" in out


def test_unusable_folder_is_a_problem_misspelled_name_or_option_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check_json(capsys, str(tmp_path), "--dataset", "inshop")
    assert code == 1 and "list_eval_partition.txt not found" in report["problems"][0]
    make_cub(tmp_path / "c", images=False, attributes=False)
    assert main(["data", "check", str(tmp_path / "c"), "--dataset", "cub", "-o", "crop_bbox=true", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "did you mean 'crop_bboxes'" in captured.err
    assert main(["data", "check", str(tmp_path), "--dataset", "cubb", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "did you mean 'cub'" in captured.err and "Traceback" not in captured.err


def test_real_inshop_partition_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = SHARED_DATA / "inshop" / "list_eval_partition.RECONSTRUCTED.txt"
    if not real.is_file():
        pytest.skip(f"real In-Shop partition not present: {real}")
    (tmp_path / "Eval").mkdir()
    shutil.copy(real, tmp_path / "Eval" / "list_eval_partition.txt")
    code, report = _check_json(capsys, str(tmp_path), "--dataset", "inshop", "--no-images")
    assert code == 0, report["problems"]
    assert report["splits"]["train"]["images"] == 25_882 and report["splits"]["train"]["classes"] == 3_997
    assert report["splits"]["query"] == {"images": 14_218, "classes": 3_985}
    assert report["splits"]["gallery"] == {"images": 12_612, "classes": 3_985}
    assert report["attributes"] is None and report["ks"] == [1, 10, 20, 30, 40, 50]


def test_real_cub_sample_with_images(capsys: pytest.CaptureFixture[str]) -> None:
    root = SHARED_DATA / "cub_200_2011_subset"
    if not (root / "CUB_200_2011" / "images.txt").is_file():
        pytest.skip(f"real CUB sample not present: {root}")
    code, report = _check_json(capsys, str(root), "--dataset", "cub", "-o", "train_classes=5")
    assert code == 1  # the sample ships 40 of its 543 listed images
    assert report["problems"] == ["503 of 543 images missing (listed in bad_images)"]
    assert report["splits"]["train"] == {"images": 282, "classes": 5}
