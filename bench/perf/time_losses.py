"""`dmlbench time-losses`: forward+backward time of each loss against the matrix-multiply floor.

The **GEMM floor** of a (batch B, dim D) shape is the median time of ``S = E @ E.T`` forward plus its
backward ``S.backward(G)`` (one B x D x B GEMM forward, two in backward), measured in the same process
on the same inputs: the least any loss over the full similarity matrix must spend. Each loss is timed
forward + backward on un-normalised random embeddings (B/4 classes x 4 images, the batch-wise
layout; losses that need predefined triplets get B/3 image-wise triplets) with random attribute
logits/targets (K = 32) for losses that need attributes. Medians over ``--repeats`` after warm-up.
A loss that asks for ``num_classes``, ``embedding_size`` or ``num_attributes`` gets the batch's class
count, ``--dim`` and K, as training would give them; ``-p key=value`` sets a loss parameter.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tabulate import tabulate

from dmlbench.losses import LOSSES, build

DEFAULT_BATCHES = (128, 256, 512, 1024)
DEFAULT_DIMS = (128, 512)
FLOOR_NAME = "gemm-floor"


@dataclass(frozen=True)
class TimingRow:
    loss: str
    batch: int
    dim: int
    median_ms: float
    floor_ms: float

    @property
    def floor_multiple(self) -> float:
        return self.median_ms / self.floor_ms if self.floor_ms > 0 else float("nan")


@dataclass
class LossInputs:
    embeddings: torch.Tensor  # (B, D) leaf, requires grad
    labels: torch.Tensor
    attr_logits: torch.Tensor  # (B, K) leaf, requires grad
    attr_targets: torch.Tensor
    tuples: torch.Tensor | None


def parse_int_list(text: str) -> list[int]:
    """``"128,256"`` -> ``[128, 256]``.

    >>> parse_int_list("128, 512")
    [128, 512]
    """
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def make_inputs(
    batch: int,
    dim: int,
    *,
    image_wise: bool,
    num_attributes: int = 32,
    device: str = "cpu",
    seed: int = 0,
) -> LossInputs:
    """Random inputs of one shape: P x K batch-wise labels (K = 4), or B // 3 image-wise triplets.

    >>> x = make_inputs(7, 3, image_wise=True)
    >>> x.tuples.tolist(), x.labels.tolist()
    ([[0, 2, 4], [1, 3, 5]], [0, 1, 0, 1, 2, 3, 4])
    """
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, generator=gen).to(device).requires_grad_()
    attr_logits = torch.randn(batch, num_attributes, generator=gen).to(device).requires_grad_()
    attr_targets = (torch.rand(batch, num_attributes, generator=gen) < 0.3).float().to(device)
    tuples = None
    if image_wise:
        # Anchors [0, T), positives [T, 2T), negatives [2T, 3T); leftover images are unused.
        count = batch // 3
        ids = torch.arange(count)
        tuples = torch.stack([ids, ids + count, ids + 2 * count], dim=1).to(device)
        labels = torch.cat([ids, ids, torch.arange(count, batch - count)])
    else:
        labels = torch.arange(batch) // 4
    return LossInputs(embeddings, labels.to(device), attr_logits, attr_targets, tuples)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_ms(step: Callable[[], None], *, repeats: int, warmup: int, device: str) -> list[float]:
    """Wall times (ms) of `repeats` calls of `step` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    gc.collect()
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def interleaved_ms(
    step: Callable[[], None], floor_step: Callable[[], None], *, repeats: int, warmup: int, device: str
) -> tuple[list[float], list[float]]:
    """Wall times (ms) of `step` and of `floor_step`, alternated call by call: load that drifts during
    the run hits both alike, so their ratio holds on a shared machine."""
    for _ in range(warmup):
        step()
    gc.collect()
    samples: list[float] = []
    floors: list[float] = []
    for _ in range(repeats):
        for fn, out in ((floor_step, floors), (step, samples)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append((time.perf_counter() - start) * 1e3)
    return samples, floors


def gemm_floor_step(inputs: LossInputs, grad_out: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        inputs.embeddings.grad = None
        (inputs.embeddings @ inputs.embeddings.T).backward(grad_out)

    return step


def loss_step(name: str, inputs: LossInputs, params: Mapping[str, Any] | None = None) -> Callable[[], None]:
    # What training would hand a loss that asks: the batch's classes, the embedding size, K attributes.
    harness = {
        "num_classes": int(inputs.labels.max().item()) + 1,
        "embedding_size": inputs.embeddings.shape[1],
        "num_attributes": inputs.attr_logits.shape[1],
    }
    loss_fn = build(name, harness, **(params or {})).to(inputs.embeddings.device)
    use_attrs = loss_fn.needs_attributes

    def step() -> None:
        inputs.embeddings.grad = None
        inputs.attr_logits.grad = None
        loss = loss_fn(
            inputs.embeddings,
            inputs.labels,
            tuples=inputs.tuples,
            attr_logits=inputs.attr_logits if use_attrs else None,
            attr_targets=inputs.attr_targets if use_attrs else None,
        )
        loss.backward()

    return step


def time_losses(
    names: Sequence[str],
    batches: Sequence[int] = DEFAULT_BATCHES,
    dims: Sequence[int] = DEFAULT_DIMS,
    *,
    device: str = "cpu",
    repeats: int = 10,
    warmup: int = 3,
    num_attributes: int = 32,
    seed: int = 0,
    on_error: Callable[[str, Exception], None] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[TimingRow]:
    """One row per (shape, loss), plus a ``gemm-floor`` row per shape (the median of all its floor samples).

    Each loss's multiple is against the floor sampled alternately with it (floor, loss, floor, loss, ...),
    so a drift in machine load during the run shows less in the multiples.
    """
    rows: list[TimingRow] = []
    for batch in batches:
        for dim in dims:
            pairs = make_inputs(
                batch, dim, image_wise=False, num_attributes=num_attributes, device=device, seed=seed
            )
            tuples = make_inputs(
                batch, dim, image_wise=True, num_attributes=num_attributes, device=device, seed=seed
            )
            grad_out = torch.randn(batch, batch, generator=torch.Generator().manual_seed(seed)).to(device)
            floor_step = gemm_floor_step(pairs, grad_out)
            floor_samples = median_ms(floor_step, repeats=repeats, warmup=warmup, device=device)
            loss_times: list[tuple[str, float, float]] = []
            for name in names:
                inputs = tuples if LOSSES.get(name).requires_tuples else pairs
                try:
                    samples, floors = interleaved_ms(
                        loss_step(name, inputs, (params or {}).get(name)), floor_step,
                        repeats=repeats, warmup=warmup, device=device,
                    )  # fmt: skip
                except Exception as err:  # one broken (e.g. plugin) loss must not sink the whole table
                    if on_error is None:
                        raise
                    on_error(name, err)
                    continue
                floor_samples += floors
                loss_times.append((name, statistics.median(samples), statistics.median(floors)))
            floor = statistics.median(floor_samples)
            rows.append(TimingRow(FLOOR_NAME, batch, dim, floor, floor))
            rows.extend(TimingRow(name, batch, dim, ms, own_floor) for name, ms, own_floor in loss_times)
    return rows


def format_table(rows: Sequence[TimingRow], tablefmt: str = "github") -> str:
    table = [(r.loss, r.batch, r.dim, f"{r.median_ms:.2f}", f"{r.floor_multiple:.2f}") for r in rows]
    return tabulate(table, headers=["loss", "batch", "dim", "median ms", "x GEMM floor"], tablefmt=tablefmt)


def select_losses(patterns: str | None) -> list[str]:
    """Registered losses, optionally filtered by a comma-separated list of exact names."""
    if not patterns:
        return LOSSES.names()
    names = [p.strip() for p in patterns.split(",") if p.strip()]
    for name in names:
        LOSSES.get(name)  # raises UnknownNameError naming the closest registered loss
    return names
