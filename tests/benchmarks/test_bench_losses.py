"""pytest-benchmark versions of `dmlbench time-losses` (skipped in normal runs: `--benchmark-skip`).

Run: ``python -m pytest tests/benchmarks/test_bench_losses.py --benchmark-only``. Compare each loss
with ``test_gemm_floor`` of the same shape (E @ E.T forward + backward).
"""

from __future__ import annotations

import pytest

from dmlbench.losses import LOSSES
from dmlbench.perf.time_losses import gemm_floor_step, loss_step, make_inputs

SHAPES = [(512, 512), (256, 128)]
BUILTIN = [n for n in LOSSES.names() if LOSSES.get(n).__module__.startswith("dmlbench.losses.")]


@pytest.mark.parametrize(("batch", "dim"), SHAPES)
def test_gemm_floor(benchmark, batch: int, dim: int) -> None:  # noqa: ANN001
    import torch

    inputs = make_inputs(batch, dim, image_wise=False)
    benchmark(gemm_floor_step(inputs, torch.randn(batch, batch)))


@pytest.mark.parametrize(("batch", "dim"), SHAPES)
@pytest.mark.parametrize("name", BUILTIN)
def test_loss_forward_backward(benchmark, name: str, batch: int, dim: int) -> None:  # noqa: ANN001
    inputs = make_inputs(batch, dim, image_wise=LOSSES.get(name).requires_tuples)
    benchmark(loss_step(name, inputs))
