"""Data-parallel training (`train.distributed`) on 2 CPU processes with the gloo backend.

The losses see the global batch: for every registered loss (plugins included, with and without
predefined triplets, with attribute logits) the loss value, its stats and the gradient of every
embedding equal the single-process computation on the same global batch (float64, 1e-10).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.multiprocessing as mp

TOLERANCE = 1e-10
NOT_LOSSES = ("losses", "ddp", "on_main")  # result keys that are not loss cases


@pytest.fixture(scope="module")
def gathered_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    from support import distributed_cases

    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(distributed_cases.worker, args=(2, str(out)), nprocs=2, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_every_registered_loss_sees_the_global_batch(gathered_results: list[dict]) -> None:
    for rank, results in enumerate(gathered_results):
        covered = {case.split("/")[0] for case in results if case not in NOT_LOSSES}
        assert covered == set(results["losses"]), "a registered loss was not compared"
        assert {"cosine-margin", "learned-scale-test", "triplet", "bce-attr", "sbdl"} <= covered
        assert {"triplet/triplets", "bdl/triplets", "contrastive-pml/triplets", "bdl/lambda_attr"} <= set(results)
        for case, diffs in results.items():
            if case in NOT_LOSSES:
                continue
            assert diffs["grad_norm"] > 1e-3, f"{case}: trivial gradient, the comparison shows nothing"
            bad = {k: v for k, v in diffs.items() if k != "grad_norm" and not v <= TOLERANCE}
            assert not bad, f"rank {rank}, {case}: differs from one process on the global batch: {bad}"


def test_ddp_gradients_are_summed_not_averaged(gathered_results: list[dict]) -> None:
    """Each process's parameter gradient is its rows' share: DDP sums them into the one-process gradient;
    the head the loss ignores keeps no gradient, as in one process."""
    for results in gathered_results:
        ddp = results["ddp"]
        assert set(ddp) == {f"ddp:{n}.{p}" for n in ("trunk", "emb", "unused") for p in ("weight", "bias")}
        bad = {k: v for k, v in ddp.items() if not v <= TOLERANCE}
        assert not bad, bad


def test_a_setup_error_of_process_0_stops_every_process(gathered_results: list[dict]) -> None:
    """Process 0 alone writes the run folder; when it cannot, the others raise its error rather than
    waiting in their next collective."""
    assert [r["on_main"] for r in gathered_results] == ["ConfigError: this folder already holds a different run"] * 2


# ---------------------------------------------------------------- cheap checks of the pieces


def test_run_id_does_not_depend_on_the_process_count() -> None:
    from dmlbench.config import Config, run_id

    one, many = Config(), Config()
    many.train.distributed = True
    assert run_id(one) == run_id(many)
    assert "distributed" not in canonical_train_keys()


def canonical_train_keys() -> set[str]:
    from dmlbench.config import Config
    from dmlbench.config.io import canonical

    return set(canonical(Config())["train"])


def test_shards_reassemble_the_global_batch_and_its_seeds() -> None:
    """Each process loads its rows of the one planned batch, with the augmentation seeds a one-process
    run gives those images; together the shards hold every image and every triplet once."""
    import numpy as np

    from dmlbench import samplers
    from dmlbench.train.pipeline import SeededBatchKeys, run_schedule

    labels = np.repeat(np.arange(12), 4)
    sampler = samplers.build("image-wise", labels, seed=3, batches_per_epoch=2)
    whole = list(SeededBatchKeys(run_schedule(sampler, 1), seed=5))
    shards = [list(SeededBatchKeys(run_schedule(sampler, 1), seed=5, shard=(r, 2))) for r in range(2)]
    for step, batch in enumerate(whole):
        parts = [shard[step] for shard in shards]
        assert [k for p in parts for k in p.keys] == batch.keys
        global_tuples = batch.scheduled.batch.tuples
        assert global_tuples is not None and len(global_tuples)
        gathered = np.concatenate([p.scheduled.batch.tuples for p in parts])
        assert sorted(map(tuple, gathered.tolist())) == sorted(map(tuple, global_tuples.tolist()))
        assert [p.scheduled.sampler_state for p in parts] == [batch.scheduled.sampler_state] * 2


def test_a_loss_that_cannot_train_data_parallel_is_refused() -> None:
    from dmlbench.errors import ConfigError
    from dmlbench.losses.base import MetricLoss
    from dmlbench.train.distributed import World, check_loss

    class PerProcessMemory(MetricLoss):
        single_device_only = True

    check_loss(PerProcessMemory, "memory", World())  # one process: fine
    with pytest.raises(ConfigError, match="cannot train on several processes"):
        check_loss(PerProcessMemory, "memory", World(0, 2))
    assert PerProcessMemory.capabilities()["single_device_only"]


def test_several_processes_need_train_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started as 2 processes without train.distributed, each would train the whole run into one folder."""
    from dmlbench.errors import ConfigError
    from dmlbench.train.distributed import World, world_for

    assert world_for(False) == World() and world_for(True) == World()  # no launcher: one process
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(key, value)
    assert world_for(True) == World(1, 2, 1)
    with pytest.raises(ConfigError, match="set train.distributed: true"):
        world_for(False)


# ---------------------------------------------------------------- a real 2-process run (torchrun)


@pytest.mark.slow
def test_two_process_training_matches_one_process(tiny_synthshop: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo processes vs one process, same global batches (frozen BatchNorm: torch has
    no CPU SyncBatchNorm): same run folder name, the same first-epoch loss, one set of files."""
    import os
    import subprocess
    import sys

    from support.cli import run_cli
    from support.configs import tiny_run_config, write_config
    from support.paths import REPO

    from dmlbench import rundir

    def config(name: str, distributed: bool) -> Path:
        cfg = tiny_run_config(
            tiny_synthshop,
            tmp_path / name,
            model={"freeze_bn": True},
            train={"epochs": 2, "lr": 1e-3, "distributed": distributed},
            sampler={"batches_per_epoch": 2},
        )
        return write_config(tmp_path / f"{name}.yaml", cfg)

    one = run_cli("train", str(config("one", False)), "--quiet")
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = subprocess.run([*cmd, "-m", "dmlbench", "train", str(config("two", True)), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("run folder:") == 1  # process 0 reports, process 1 only trains

    (dir_one,) = (tmp_path / "one").iterdir()
    (dir_two,) = (tmp_path / "two").iterdir()
    assert dir_one.name == dir_two.name  # the run_id does not depend on the process count
    assert sorted(p.name for p in dir_one.iterdir()) == sorted(p.name for p in dir_two.iterdir())
    h_one, h_two = rundir.read_history(dir_one), rundir.read_history(dir_two)
    assert [r["epoch"] for r in h_two] == [1, 2]
    # Epoch 1 (the first two steps) agrees to float32 rounding; epoch 2 follows updates whose summed
    # gradients were reduced in another order, so it only agrees closely.
    assert h_two[0]["loss"] == pytest.approx(h_one[0]["loss"], rel=1e-6)
    assert h_two[0]["stats"]["grad_norm"] == pytest.approx(h_one[0]["stats"]["grad_norm"], rel=1e-4)
    assert h_two[1]["loss"] == pytest.approx(h_one[1]["loss"], rel=1e-3)
    log = (dir_two / rundir.LOG).read_text()
    assert log.count("data-parallel: 2 processes") == 1 and log.count("done:") == 1, log
    assert rundir.read_json(dir_two / rundir.METRICS)["run_id"] == dir_two.name


@pytest.mark.slow
def test_bench_train_measures_the_data_parallel_step(tiny_synthshop: Path, tmp_path: Path) -> None:
    """`bench-train` under torchrun: one table, from process 0, with the process count (the global
    batch's images/s; on a multi-GPU machine, runs with 1 and N processes give the scaling efficiency)."""
    import os
    import subprocess
    import sys

    from support.configs import tiny_run_config, write_config
    from support.paths import REPO

    cfg = write_config(tmp_path / "run.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs", train={"distributed": True}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dmlbench"]
    proc = subprocess.run([*cmd, "bench-train", str(cfg), "--steps", "1", "--warmup", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("bench-train on cpu, 2 data-parallel processes") == 1, proc.stdout
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| auto")]
    pipeline, preloaded, _ratio = (float(x) for x in row.strip("|").split("|")[2:])
    assert pipeline > 0 and preloaded > 0, row
