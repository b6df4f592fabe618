"""Every shipped sweep preset expands and validates (names, parameters, loss x sampler) without data."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import run_main
from support.paths import REPO

from dmlbench.config import load_config
from dmlbench.presets import list_presets, preset_path
from dmlbench.sweep import expand, load_sweep

PRESETS = [name for name, _ in list_presets()]


def test_the_issue_presets_ship() -> None:
    for name in ("quickstart", "regression", "sgml-inshop", "sgml-cub", "sgml-alpha-beta", "sop-triplet-subset", "inshop-ms-batchhard"):
        assert name in PRESETS
    assert all(desc for _, desc in list_presets()), "each preset's first line describes it"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_expands_and_validates(name: str) -> None:
    sweep = load_sweep(name, executor="inline")  # a bare name resolves to the shipped file
    cells = expand(sweep, validate=True)
    assert cells and len({c.run_id for c in cells}) == len(cells)
    assert preset_path(name) is not None


@pytest.mark.parametrize("path", sorted((REPO / "bench" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_run_configs_validate(path: Path) -> None:
    from dmlbench.validation.preflight import check_names

    check_names(load_config(path))


def test_sgml_ablation_cells() -> None:
    cells = expand(load_sweep("sgml-inshop", executor="inline"))
    variants = {(c.config.loss.name, c.config.loss.params.get("lambda_attr"), c.config.sampler.name) for c in cells}
    assert variants == {
        ("bdl", 0.0, "batch-wise"),  # metric-only
        ("bdl", 1.0, "batch-wise"),  # multitask
        ("sbdl", 1.0, "batch-wise"),  # SGML
        ("bce-attr", None, "batch-wise"),  # attribute-only
        ("sbdl", 1.0, "image-wise"),  # SGML, image-wise sampling (Table III)
    }
    assert {c.config.seed for c in cells} == {0, 1, 2}
    sgml = next(c.config for c in cells if c.config.loss.name == "sbdl")
    assert (sgml.model.backbone, sgml.model.fc_dim, sgml.model.emb_dim) == ("resnet101", 1024, 512)
    assert sgml.loss.params["alpha"] == 2.0 and sgml.loss.params["beta"] == 0.5 and sgml.train.lr == 1e-4


def test_list_sweeps_and_dry_run_through_the_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process (dmlbench.cli.main, what the script calls): three subprocesses only re-imported torch
    monkeypatch.chdir(REPO)
    code, out, _err = run_main(["list", "sweeps"], capsys)
    assert code == 0 and "sgml-alpha-beta" in out
    assert "tune-synthshop" not in out
    code, out, _err = run_main(["list", "tunes"], capsys)
    assert code == 0 and "Tune presets" in out
    assert "tune-synthshop" in out and "tune-inshop" in out and "The Reality Check protocol" in out
    # no In-Shop data and no resnet101 weights here: the dry run lists all 20 cells, then each problem once
    monkeypatch.setenv("TORCH_HOME", "/nonexistent")
    code, out, err = run_main(["sweep", "sgml-alpha-beta", "--dry-run", "--executor", "inline"], capsys)
    assert code == 2, err
    assert "20 cells" in out and "would submit 20" in out
    problems = [line for line in out.splitlines() if line.startswith("error (")]
    assert len(problems) == 2 and all(line.startswith("error (all 20 cells): ") for line in problems), problems
    assert "resnet101" in problems[0] and "data/inshop" in problems[1]
