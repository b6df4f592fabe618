"""The real CUB sample trains and evaluates through the same `dmlbench train` CLI as synthshop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import run_cli
from support.configs import tiny_run_config, write_config
from support.paths import SHARED_DATA

pytestmark = pytest.mark.slow

CUB_SAMPLE = SHARED_DATA / "cub_200_2011_subset"


def _cub_config(tmp_path: Path, **data: object) -> Path:
    if not (CUB_SAMPLE / "CUB_200_2011" / "images.txt").is_file():
        pytest.skip(f"real CUB sample not present: {CUB_SAMPLE}")
    cfg = tiny_run_config(
        CUB_SAMPLE,
        tmp_path / "runs",
        # The sample has classes 1-10 with 4 real images each: 1-5 train, 6-10 test.
        data={"dataset": "cub", "root": str(CUB_SAMPLE), "options": {"train_classes": 5}, **data},
        sampler={"name": "batch-wise", "params": {"classes_per_batch": 5, "images_per_class": 4}},
    )
    return write_config(tmp_path / "cub.yaml", cfg)


def test_cub_sample_trains_and_evaluates(tmp_path: Path) -> None:
    proc = run_cli("train", str(_cub_config(tmp_path, skip_bad_images=True)), "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == "cub" and metrics["protocol"] == "leave-one-out"
    for layer in ("emb", "fc", "conv"):
        scores = metrics["layers"][layer]
        assert scores["num_queries"] == 20  # the 20 real test images, each with 3 same-class images
        assert {f"recall@{k}" for k in (1, 2, 4, 8, 16, 32)} <= scores.keys()
        assert 0.0 <= scores["recall@1"] <= scores["recall@32"] <= 1.0
    log = (run_dir / "run.log").read_text()
    # The 503 listed-but-absent images are excluded and counted, never silently.
    assert "excluded 262 unreadable images" in log and "excluded 241 unreadable images" in log
    assert "NON-STANDARD split" in log
    assert (run_dir / "DONE").is_file()


def test_cub_sample_without_skip_stops_before_training(tmp_path: Path) -> None:
    proc = run_cli("train", str(_cub_config(tmp_path)), "--quiet")
    assert proc.returncode != 0
    assert "set data.skip_bad_images=true to exclude them" in proc.stderr
    assert "(missing)" in proc.stderr
    assert not list((tmp_path / "runs").glob("*/checkpoint.pt"))
