"""Tuning specs: bad specs fail before anything is submitted, with a message saying what to fix; the
validation folds; the new config fields leave existing run_ids alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config

from dmlbench.config import config_from_dict, run_id
from dmlbench.data.splits import carve_fold, max_folds
from dmlbench.errors import DatasetError, TuneError
from dmlbench.tune.spec import check_spec, spec_from_dict


def spec_dict(data_root: Path, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "output_dir": str(out),
        "base": tiny_run_config(data_root, out / "unused", train={"epochs": 1}),
        "methods": [{"loss": "bdl"}, {"loss": "multi-similarity"}],
        "trials": 3,
        "folds": 2,
        "seeds": 2,
        "executor": {"kind": "inline"},
        **extra,
    }


BAD_SPECS = [
    (
        {"methods": [{"loss": "bdl", "space": {"loss.params.alhpa": {"low": 1, "high": 4}}}]},
        "method 'bdl': loss 'bdl' has no parameter 'alhpa'; did you mean 'alpha'?",
    ),
    ({"methods": [{"loss": "bdl", "space": {"train.lr": {"low": 0.01, "high": 0.001}}}]}, "empty range (low 0.01 >= high 0.001)"),
    ({"folds": 40}, "folds: 40 folds need 80 training classes"),
    ({"folds": 1}, "'folds' must be an integer >= 2"),
    ({"trails": 3}, "unknown tuning spec key 'trails'; did you mean 'trials'?"),
    ({"methods": [{"loss": "bdl", "space": {"seed": {"low": 0, "high": 3}}}]}, "fixed by the protocol"),
    ({"methods": [{"loss": "bdl", "space": {"train.lrr": {"low": 0.1, "high": 1}}}]}, "'train.lrr' is not a config key; did you mean 'train.lr'?"),
    ({"objective": {"metric": "map@10"}}, "objective metric 'map@10'"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SPECS)
def test_bad_spec_fails_before_anything_is_written(tiny_synthshop: Path, tmp_path: Path, change: dict[str, Any], message: str) -> None:
    out = tmp_path / "out"
    data = spec_dict(tiny_synthshop, out, **change)
    with pytest.raises(TuneError) as err:
        check_spec(spec_from_dict(data))
    assert message in str(err.value)
    assert not out.exists()


def test_bad_spec_cli_is_one_line_and_exit_2(tiny_synthshop: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_dict(tiny_synthshop, out, folds=40)))
    result = run_cli("tune", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "dmlbench: error: folds: 40 folds need 80 training classes "
        f"(synthshop under {tiny_synthshop} has 24: at most 12 folds, each fold needs 2 classes); lower 'folds'"
    ]
    assert not out.exists()


def test_folds_are_class_disjoint_deterministic_and_cover_the_training_classes() -> None:
    labels = np.repeat(np.arange(10), 3)
    splits = np.array(["train"] * 24 + ["test"] * 6, dtype=object)
    folds = [carve_fold(labels, splits, 3, f, seed=5)[0] for f in range(3)]
    val_sets = [set(labels[s == "val"].tolist()) for s in folds]
    assert set().union(*val_sets) == set(range(8))  # the 8 training classes, each in exactly one fold
    assert sum(len(v) for v in val_sets) == 8
    for s, v in zip(folds, val_sets, strict=True):
        assert not v & set(labels[s == "train"].tolist())
        assert (s[24:] == "test").all()  # test images untouched
    again = carve_fold(labels, splits, 3, 1, seed=5)[0]
    assert (again == folds[1]).all()
    assert max_folds(8) == 4
    with pytest.raises(DatasetError, match="allow 2 to 4 folds"):
        carve_fold(labels, splits, 5, 0, seed=5)


def test_new_config_fields_keep_run_ids_at_defaults() -> None:
    # known ids from before data.folds / data.fold / eval.split existed
    assert run_id(config_from_dict({})) == "da85b2d8c7e2"
    assert run_id(config_from_dict({"eval": {"split": "val"}, "data": {"folds": 3}})) != "da85b2d8c7e2"


def test_shipped_presets_meet_the_protocol_sizes() -> None:
    from dmlbench.tune.spec import load_spec

    fast = load_spec("tune-synthshop")
    assert len(fast.methods) >= 4 and fast.trials >= 20 and fast.folds >= 3 and fast.seeds >= 10
    assert fast.base["train"]["tier"] == "head"  # the fast tier: a head on cached frozen features
    gpu = load_spec("tune-inshop")
    assert gpu.executor.kind == "slurm" and gpu.job == "fold" and gpu.base["data"]["dataset"] == "inshop"
    assert "GPU-h" in (Path(__file__).resolve().parents[2] / "bench" / "tune" / "presets" / "tune-inshop.yaml").read_text().splitlines()[0]
