"""End to end through the real CLI on tiny synthshop: run folder contents, kill -9 and resume, fail-fast errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config, write_config
from support.paths import REPO
from support.rebuild import rebuilt_features, score

pytestmark = pytest.mark.slow

LAYERS = ("emb", "fc", "conv")


def _only_run_dir(output_dir: Path) -> Path:
    runs = [p for p in output_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_train_cli_writes_a_complete_run_folder(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    proc = run_cli("train", str(cfg), "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = _only_run_dir(tmp_path / "runs")
    for name in ("config.yaml", "history.jsonl", "model.pt", "metrics.json", "DONE", "embeddings_sample.npz"):
        assert (run_dir / name).is_file(), name
    # train.keep=weights (the default): no optimiser state and no lease left once DONE
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "checkpoint.json", "lease.json"):
        assert not (run_dir / name).exists(), name

    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["loss"] is not None and row["loss"] == row["loss"] for row in history)
    assert "fraction_seen" in json.dumps(history[0]["sampler"]) or history[0]["sampler"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run_id"] == run_dir.name
    assert metrics["dataset"] == "synthshop" and metrics["protocol"] == "query-gallery"
    assert set(metrics["layers"]) == set(LAYERS)
    for layer in LAYERS:
        m = metrics["layers"][layer]
        for key in ("recall@1", "recall@10", "precision@1", "precision@10", "map@r", "r_precision"):
            assert 0.0 <= m[key] <= 1.0, (layer, key, m[key])
        # Recall@K is a hit rate, so it can only grow with K and is at least Precision@1.
        assert m["recall@10"] >= m["recall@1"] >= 0 and m["recall@1"] == pytest.approx(m["precision@1"])
    assert "recall@1" in proc.stdout  # the printed per-layer table
    # Each image's features scored with its own label: recomputed from model.pt alone, the same numbers
    # (with several galleries, and from the embedding sample: tests/train/test_train_results.py).
    assert score(rebuilt_features(run_dir)) == metrics["layers"]

    # A finished run is never written again: rerunning is a no-op that leaves every file untouched.
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    again = run_cli("train", str(cfg), "--quiet")
    assert again.returncode == 0 and "already finished" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def _kill_when(cmd_cfg: Path, output_dir: Path, ready: Callable[[Path], bool]) -> Path:
    """Start `dmlbench train`, SIGKILL it as soon as `ready(run_dir)` holds; return the run folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmlbench", "train", str(cmd_cfg), "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    run_dir = None
    deadline = time.time() + 900  # generous: a loaded CI box trains slowly
    while time.time() < deadline and proc.poll() is None:
        runs = [p for p in output_dir.iterdir() if p.is_dir()] if output_dir.is_dir() else []
        if runs and ready(runs[0]):
            run_dir = runs[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert run_dir is not None, f"the run never got ready to be killed: {proc.stderr and proc.stderr.read()}"
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "DONE").exists() and not (run_dir / "metrics.json").exists()
    return run_dir


def _history_rows(run_dir: Path) -> int:
    path = run_dir / "history.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


def test_sigkill_mid_epoch_resumes_to_identical_metrics(tiny_synthshop: Path, tmp_path: Path) -> None:
    """Killed runs resume, not restart: the history rows written before the kill stay byte for byte, each
    epoch is trained (and logged) once, the learning rate of every epoch (cosine schedule, SGD momentum,
    gradient clipping: the scheduler and optimizer state are restored) and the metrics equal those of an
    uninterrupted run. Killed well into epoch 2 (resumes from epoch 1's checkpoint), and killed after a
    mid-epoch checkpoint (train.checkpoint_every_batches) while loading with 2 worker processes
    (augmentation does not depend on num_workers). The finished run's metrics.json is then recomputed
    from its folder alone (model.pt, features extracted independently): exactly equal."""

    def config(out: str, **train: object) -> Path:
        # The small backbone keeps checkpoints (and so the test) small; the path is the same as ResNet's.
        cfg = tiny_run_config(
            tiny_synthshop,
            tmp_path / out,
            model={"backbone": "mobilenet_v3_small"},
            train={"epochs": 3, "lr": 1e-2, "optimizer": "sgd", "momentum": 0.9, "lr_schedule": "cosine", "grad_clip": 1.0, **train},
            sampler={"batches_per_epoch": 24},
        )
        return write_config(tmp_path / f"{out}.yaml", cfg)

    epoch_end = config("killed")
    run_dir = _kill_when(epoch_end, tmp_path / "killed", lambda d: (d / "checkpoint.pt").is_file())
    assert _history_rows(run_dir) == 1, "the kill must land in epoch 2 for this test to mean anything"
    before_kill = (run_dir / "history.jsonl").read_bytes()

    mid_epoch = config("mid", checkpoint_every_batches=5, num_workers=2)
    mid_dir = _kill_when(
        mid_epoch, tmp_path / "mid", lambda d: (d / "checkpoint.pt").is_file() and _history_rows(d) == 0
    )
    assert _history_rows(mid_dir) == 0, "the kill must land after a mid-epoch-1 checkpoint"
    import torch

    checkpoint = torch.load(mid_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    # The sampler state saved is where the *trained* batches stopped, not where the 2 workers had prefetched.
    assert checkpoint["step"] > 0
    assert (checkpoint["sampler"]["epoch"], checkpoint["sampler"]["next_batch"]) == (checkpoint["epoch"], checkpoint["step"])

    for cfg in (epoch_end, mid_epoch):
        resumed = run_cli("train", str(cfg), "--quiet", timeout=900)
        assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in (run_dir / "run.log").read_text()
    assert "resuming" in (mid_dir / "run.log").read_text() and ", step " in (mid_dir / "run.log").read_text()
    assert (run_dir / "history.jsonl").read_bytes().startswith(before_kill)  # epoch 1's row untouched
    # each epoch trained once: the epochs after the resume point are logged exactly once (epoch 1 of the
    # killed run at most once: the kill may land between its checkpoint and its log line)
    for folder, first_after_resume in ((run_dir, 2), (mid_dir, 1)):
        log = (folder / "run.log").read_text()
        counts = [log.count(f"epoch {k}/3 loss") for k in (1, 2, 3)]
        assert counts[first_after_resume - 1 :] == [1] * (4 - first_after_resume) and max(counts) == 1, log
    reference = run_cli("train", str(config("ref")), "--quiet", timeout=900)
    assert reference.returncode == 0, reference.stderr

    ref_dir = _only_run_dir(tmp_path / "ref")
    # same result-relevant config -> same run_id, whatever the output folder, workers or checkpoint cadence
    assert ref_dir.name == run_dir.name == mid_dir.name
    want = json.loads((ref_dir / "metrics.json").read_text())["layers"]
    ref_rows = [json.loads(x) for x in (ref_dir / "history.jsonl").read_text().splitlines()]
    assert len(ref_rows) == 3
    lrs = [row["lr"] for row in ref_rows]
    assert lrs[0] > lrs[1] > lrs[2] >= 0  # the cosine schedule really moves the rate
    for folder in (run_dir, mid_dir):
        assert json.loads((folder / "metrics.json").read_text())["layers"] == want
        rows = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
        assert [(r["loss"], r["lr"], r["stats"]["grad_norm"]) for r in rows] == [
            (r["loss"], r["lr"], r["stats"]["grad_norm"]) for r in ref_rows
        ]
    # The evaluation scored each image's features against its own label: recomputed independently, equal.
    assert score(rebuilt_features(ref_dir)) == json.loads((ref_dir / "metrics.json").read_text())["layers"]


def test_misspelled_key_fails_before_any_work(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg_dict = tiny_run_config(tiny_synthshop, tmp_path / "runs")
    cfg_dict["train"]["lerning_rate"] = 0.1
    cfg = write_config(tmp_path / "typo.yaml", cfg_dict)
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 2
    assert "unknown config key 'train.lerning_rate'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()

    good = write_config(tmp_path / "good.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    proc = run_cli("train", str(good), "sampler.params.clases_per_batch=4")
    assert proc.returncode == 2
    assert "did you mean 'classes_per_batch'" in proc.stderr
    proc = run_cli("train", str(good), "loss=multi-similarty")
    assert proc.returncode == 2 and "did you mean 'multi-similarity'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_pretrained_weights_name_the_exact_file(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    torch_home = tmp_path / "torch-home"
    proc = run_cli("train", str(cfg), "model.pretrained=true", env={"TORCH_HOME": str(torch_home)})
    assert proc.returncode == 2
    expected = torch_home / "hub" / "checkpoints"
    assert "resnet18-f37072fd.pth" in proc.stderr and str(expected) in proc.stderr
    assert not list((tmp_path / "runs").glob("*/checkpoint.pt"))


def test_nan_loss_stops_the_run_with_a_clear_message(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    proc = run_cli("--plugin", "plugins.nan_loss", "train", str(cfg), "--quiet", "loss=nan-after", "loss.params.calls=3")
    assert proc.returncode == 1
    assert "loss is nan at epoch 1, step 4 (nan-after)" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = _only_run_dir(tmp_path / "runs")
    # Stopped inside epoch 1: no checkpoint, no history row, no metrics, never marked finished.
    for name in ("DONE", "metrics.json", "checkpoint.pt"):
        assert not (run_dir / name).exists(), name
    assert (run_dir / "history.jsonl").read_text() == ""


def test_plugin_loss_from_the_config_trains_end_to_end(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg_dict = tiny_run_config(tiny_synthshop, tmp_path / "runs", loss={"name": "cosine-margin", "params": {"margin": 0.2}})
    cfg_dict["plugins"] = ["plugins.example_losses"]
    cfg_dict["train"]["epochs"] = 1
    proc = run_cli("train", str(write_config(tmp_path / "run.yaml", cfg_dict)), "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = _only_run_dir(tmp_path / "runs")
    assert (run_dir / "DONE").is_file()
    history = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    # The plugin's stats reached the history, and it saw every batch whole: 6 classes x 3 images give
    # 6 * 3 * 2 positive and 18 * 15 negative ordered pairs, in each batch of the epoch.
    assert set(history["stats"]) == {"active_pairs", "pos_sim", "neg_sim", "degenerate", "grad_norm"}
    assert history["stats"]["active_pairs"] == 6 * 3 * 2 + 18 * 15 and history["stats"]["degenerate"] == 0
    # The run records the plugin (config.yaml) and the file its loss came from (code.json) ...
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["plugins"] == ["plugins.example_losses"]
    plugin_file = REPO / "tests" / "plugins" / "example_losses.py"
    assert json.loads((run_dir / "code.json").read_text()) == {
        "loss:cosine-margin": {"module": "plugins.example_losses", "sha256": hashlib.sha256(plugin_file.read_bytes()).hexdigest()}
    }
    # ... and its metrics are those of its own model.pt
    assert score(rebuilt_features(run_dir)) == json.loads((run_dir / "metrics.json").read_text())["layers"]


def test_bench_train_reports_pipeline_and_preloaded_throughput(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    proc = run_cli("bench-train", str(cfg), "--steps", "2", "--warmup", "1", "--amp", "auto,off")
    assert proc.returncode == 0, proc.stderr
    # What was measured is said: the device, the model, image size, sampler, workers and timed steps ...
    assert "bench-train on cpu: resnet18 at 32 px, batch-wise, num_workers=0, 2 timed steps" in proc.stdout
    # ... and each requested setting has its row, in the order asked (images/s: tests/train/test_train_pipeline.py)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "img/s" not in line]
    assert [row.strip("|").split("|")[0].strip() for row in rows] == ["auto", "off"], proc.stdout
    for row in rows:
        pipeline, preloaded, ratio = (float(x) for x in row.strip("|").split("|")[2:])
        assert pipeline > 0 and preloaded > 0 and ratio == pytest.approx(pipeline / preloaded, abs=0.01)
    assert not (tmp_path / "runs").exists()  # a benchmark writes no run folder


def test_compiled_model_steps_like_eager_and_keeps_checkpoint_keys(tiny_synthshop: Path, tmp_path: Path) -> None:
    """train.compile compiles the forward in place: same first step as eager, same state_dict names (so
    checkpoints resume with or without compile)."""
    import torch

    from dmlbench.config import config_from_dict
    from dmlbench.data.dataset import ImageDataset
    from dmlbench.train import (
        batch_tensors,
        build_trainer,
        image_transform,
        prepare,
        run_schedule,
        training_loader,
    )

    results = {}
    for mode in ("off", "default"):
        cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, train={"compile": mode}))
        parts = prepare(cfg, log=lambda _line: None, check_images=False)
        trainer = build_trainer(parts)
        train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
        loaded = next(iter(training_loader(cfg, train_set, run_schedule(parts.sampler, epochs=1), parts.device)))
        labels = torch.from_numpy(parts.index.labels)
        results[mode] = (trainer.step(*batch_tensors(loaded, labels, None, parts.device)), trainer.model)
    (eager_loss, eager_norm), eager = results["off"]
    (compiled_loss, compiled_norm), compiled = results["default"]
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    assert compiled_norm == pytest.approx(eager_norm, rel=1e-3)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    eager.load_state_dict(compiled.state_dict())  # strict: a compiled run's checkpoint loads into an eager model


def test_compile_without_a_compiler_fails_before_any_work(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs"))
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    proc = run_cli(
        "train", str(cfg), "train.compile=default", "train.device=cpu",
        env={"PATH": str(empty_bin), "CXX": "no-such-compiler"},
    )
    assert proc.returncode == 2
    assert "train.compile on CPU needs a C++ compiler" in proc.stderr and "train.compile=off" in proc.stderr
    assert not (tmp_path / "runs").exists()
