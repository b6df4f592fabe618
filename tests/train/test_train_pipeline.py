"""The training input pipeline: one reader of the sampler, and the sampler state a checkpoint records."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from support.configs import tiny_run_config

from dmlbench.config import config_from_dict
from dmlbench.data.dataset import ImageDataset
from dmlbench.train import LoadedBatch, image_transform, prepare, run_schedule, training_loader


@pytest.mark.parametrize("num_workers", [0, 2])
def test_consumed_batches_fix_the_sampler_state_and_a_resume_sees_the_same_batches(
    tiny_synthshop: Path, tmp_path: Path, num_workers: int
) -> None:
    """After N training steps the state a checkpoint saves is "N batches consumed", however far the
    loader's workers prefetched; a sampler restored from it yields the remaining batches, images included."""
    cfg = config_from_dict(
        tiny_run_config(tiny_synthshop, tmp_path, sampler={"batches_per_epoch": 5}, train={"num_workers": num_workers})
    )

    def loader(first_epoch: int = 0, first_step: int = 0, state: dict | None = None) -> list[LoadedBatch]:
        parts = prepare(cfg, log=lambda _line: None, check_images=False)
        if state is not None:
            parts.sampler.load_state_dict(state)
        train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
        schedule = run_schedule(parts.sampler, 2, first_epoch, first_step)
        return list(training_loader(cfg, train_set, schedule, parts.device))

    full = loader()
    assert [(b.epoch, b.step) for b in full] == [(e, s) for e in range(2) for s in range(5)]
    for consumed, batch in enumerate(full, start=1):
        # (epoch, next batch) after `consumed` steps: the position a resume continues from
        state = batch.sampler_state
        assert (state["epoch"], state["next_batch"]) == (batch.epoch, batch.step + 1)
        assert state["epoch"] * 5 + state["next_batch"] == consumed

    steps = 7  # killed after a mid-epoch-2 checkpoint
    state = full[steps - 1].sampler_state
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    parts.sampler.load_state_dict(state)
    epoch, step = parts.sampler.resume_point()
    assert (epoch, step) == (1, 2)
    rest = loader(epoch, step, state)
    assert len(rest) == len(full) - steps
    for resumed, uninterrupted in zip(rest, full[steps:], strict=True):
        assert (resumed.epoch, resumed.step) == (uninterrupted.epoch, uninterrupted.step)
        assert torch.equal(resumed.dataset_idx, uninterrupted.dataset_idx)
        assert torch.equal(resumed.images, uninterrupted.images)  # same crops and flips too


def test_the_loop_does_not_read_the_sampler_a_second_time(tiny_synthshop: Path, tmp_path: Path) -> None:
    """The loaded batch carries its tuples: image-wise triplets arrive with their images."""
    cfg = config_from_dict(
        tiny_run_config(
            tiny_synthshop, tmp_path, loss={"name": "triplet"}, sampler={"name": "image-wise", "params": {}, "batches_per_epoch": 3}
        )
    )
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    expected = list(itertools.islice(run_schedule(parts.sampler, 1)(), 3))
    train_set = ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True))
    loaded = list(training_loader(cfg, train_set, run_schedule(parts.sampler, 1), parts.device))
    for got, want in zip(loaded, expected, strict=True):
        assert got.tuples is not None and torch.equal(got.tuples, torch.from_numpy(want.batch.tuples))
        assert got.dataset_idx.tolist() == [int(parts.train_positions[i]) for i in want.batch.indices]


def test_bench_train_counts_the_timed_steps_images_over_their_own_time(
    tiny_synthshop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench-train's images/s: the timed steps' images (warm-up excluded) over the time between the marks
    taken around them, for the real pipeline and for the pre-loaded batches alike. The clock is the real
    one, only watched: each reading is kept to recompute both figures."""
    import time
    from types import SimpleNamespace

    from dmlbench.perf import bench_train

    readings: list[float] = []

    def watched() -> float:
        readings.append(time.perf_counter())
        return readings[-1]

    monkeypatch.setattr(bench_train, "time", SimpleNamespace(perf_counter=watched))
    cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path))
    steps, warmup = 2, 1
    result = bench_train.measure(cfg, steps=steps, warmup=warmup)
    assert len(readings) == 4  # start and end of each of the two timed loops
    images = steps * 6 * 3  # classes_per_batch x images_per_class of every timed step
    assert result.pipeline_images_per_s == images / (readings[1] - readings[0])
    assert result.tensors_images_per_s == images / (readings[3] - readings[2])
    assert (result.processes, result.reports) == (1, True)
