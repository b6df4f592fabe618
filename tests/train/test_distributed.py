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


@pytest.fixture(scope="module")
def gathered_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    import distributed_cases

    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(distributed_cases.worker, args=(2, str(out)), nprocs=2, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_every_registered_loss_sees_the_global_batch(gathered_results: list[dict]) -> None:
    for rank, results in enumerate(gathered_results):
        covered = {case.split("/")[0] for case in results if case not in ("losses", "ddp")}
        assert covered == set(results["losses"]), "a registered loss was not compared"
        assert {"cosine-margin", "learned-scale-test", "triplet", "bce-attr", "sbdl"} <= covered
        assert {"triplet/triplets", "bdl/triplets", "contrastive-pml/triplets", "bdl/lambda_attr"} <= set(results)
        for case, diffs in results.items():
            if case in ("losses", "ddp"):
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
