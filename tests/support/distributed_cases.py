"""Worker side of tests/train/test_distributed.py: run in each of 2 gloo processes (torch.multiprocessing).

For every registered loss (plugins included) each process holds its shard of one float64 global
batch, gathers it (`dmlbench.train.distributed.gather_batch`), computes the loss and back-propagates;
it then compares the loss value, the stats and the gradient of each of its embeddings (and attribute
logits, and the loss's own parameters) with the single-process computation on the whole global batch,
and writes the largest differences to `<out>/rank<r>.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dmlbench.errors import ConfigError
from dmlbench.losses import LOSSES, build, register
from dmlbench.losses.base import MetricLoss
from dmlbench.losses.common import cosine_matrix, label_masks
from dmlbench.train import distributed
from dmlbench.train.distributed import World, gather_batch, shard_rows, shard_tuples

BATCH, DIM, ATTRS = 9, 6, 3  # 9 rows: uneven shards of 5 and 4


class LearnedScaleLoss(MetricLoss):
    """A loss with its own trainable parameter (its gradient must also match); registered by the workers only."""

    has_parameters = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0, dtype=torch.float64))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, **_: Any) -> torch.Tensor:
        _, sim = cosine_matrix(embeddings)
        pos, neg = label_masks(labels)
        logits = self.scale * sim
        return torch.where(neg, logits.exp(), 0.0).sum().log() - torch.where(pos, logits, 0.0).sum() / pos.sum()


def global_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([2, 0, 1, 0, 3, 1, 2, 0, 3])  # every class straddles the two shards
    same = labels[:, None] == labels[None, :]
    triplets = [
        (a, p, n) for a in range(BATCH) for p in range(BATCH) for n in range(BATCH) if a != p and same[a, p] and not same[a, n]
    ]
    tuples = torch.tensor(triplets[::3])[torch.randperm(len(triplets[::3]), generator=gen)]
    return {
        "emb": torch.randn(BATCH, DIM, dtype=torch.float64, generator=gen),
        "labels": labels,
        "tuples": tuples,
        "logits": torch.randn(BATCH, ATTRS, dtype=torch.float64, generator=gen),
        "targets": (torch.rand(BATCH, ATTRS, generator=gen) < 0.5).double(),
    }


def cases() -> list[tuple[str, str, dict[str, Any], bool]]:
    """(case name, loss name, params, with predefined triplets) for every registered loss and layout."""
    out = []
    for name in LOSSES.names():
        cls = LOSSES.get(name)
        if not cls.requires_tuples:
            out.append((name, name, {}, False))
        if cls.accepts_tuples or cls.requires_tuples:
            out.append((f"{name}/triplets", name, {}, True))
    out.append(("bdl/lambda_attr", "bdl", {"lambda_attr": 0.5}, False))
    return out


def max_diff(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    return float((a - b).abs().max()) if a.numel() else 0.0


def compare_case(loss_name: str, params: dict[str, Any], with_tuples: bool, rank: int) -> dict[str, float]:
    data = global_batch()
    tuples = data["tuples"] if with_tuples else None
    # single process, whole global batch
    ref_loss_fn = build(loss_name, **params).double()
    ref_emb = data["emb"].clone().requires_grad_()
    ref_logits = data["logits"].clone().requires_grad_()
    ref = ref_loss_fn(ref_emb, data["labels"], tuples=tuples, attr_logits=ref_logits, attr_targets=data["targets"])
    ref.backward()
    # this process's shard, gathered
    rows = shard_rows(BATCH, rank, dist.get_world_size())
    loss_fn = build(loss_name, **params).double()
    emb = data["emb"][rows].clone().requires_grad_()
    logits = data["logits"][rows].clone().requires_grad_()
    local_tuples = None if tuples is None else torch.from_numpy(shard_tuples(tuples.numpy(), rows))
    batch = gather_batch(emb, data["labels"][rows], local_tuples, logits, data["targets"][rows])
    loss = loss_fn(batch.embeddings, batch.labels, tuples=batch.tuples, attr_logits=batch.attr_logits, attr_targets=batch.attr_targets)
    loss.backward()
    out = {
        "loss": abs(float(loss.detach()) - float(ref.detach())),
        "emb_grad": max_diff(emb.grad, None if ref_emb.grad is None else ref_emb.grad[rows]),
        "logit_grad": max_diff(logits.grad, None if ref_logits.grad is None else ref_logits.grad[rows]),
        "stats": max((abs(loss_fn.last_stats[k] - v) for k, v in ref_loss_fn.last_stats.items()), default=0.0),
        "grad_norm": float(torch.cat([g.flatten() for g in (ref_emb.grad, ref_logits.grad) if g is not None]).norm()),
    }
    for (pname, p), ref_p in zip(loss_fn.named_parameters(), ref_loss_fn.parameters(), strict=True):
        out[f"param_grad:{pname}"] = max_diff(p.grad, ref_p.grad)
    return out


class TwoHeads(nn.Module):
    """A model whose second head the loss ignores (DDP must leave its gradient None, as one process does)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(5, 7).double()
        self.emb = nn.Linear(7, 4).double()
        self.unused = nn.Linear(7, 2).double()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(x))
        return {"emb": self.emb(h), "other": self.unused(h)}


def compare_ddp_step(rank: int) -> dict[str, float]:
    """Parameter gradients of a DDP model (summed, not averaged) against one process on the global batch."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 5, dtype=torch.float64, generator=gen)
    labels = global_batch()["labels"]
    torch.manual_seed(0)
    ref_model = TwoHeads()
    torch.manual_seed(0)
    model = TwoHeads()
    ref_loss = build("multi-similarity")(ref_model(x)["emb"], labels)
    ref_loss.backward()
    parallel = distributed.wrap_model(model, World(rank, dist.get_world_size()), torch.device("cpu"), [])
    rows = shard_rows(BATCH, rank, dist.get_world_size())
    batch = gather_batch(parallel.ddp(x[rows])["emb"], labels[rows], None, None, None)
    build("multi-similarity")(batch.embeddings, batch.labels).backward()
    out = {}
    for (name, p), ref_p in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        out[f"ddp:{name}"] = max_diff(p.grad, ref_p.grad)
    return out


def refuse_folder() -> None:
    raise ConfigError("this folder already holds a different run")


def error_on_every_rank(rank: int) -> str:
    """What each process raises when process 0's part of the setup (`World.on_main`) fails."""
    try:
        World(rank, dist.get_world_size()).on_main(refuse_folder)
    except ConfigError as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def worker(rank: int, world_size: int, out: str) -> None:
    import dmlbench.registry

    dmlbench.registry.import_plugins(["plugins.example_losses"])
    register("learned-scale-test")(LearnedScaleLoss)
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=world_size)
    try:
        results: dict[str, Any] = {"losses": LOSSES.names()}
        for case, name, params, with_tuples in cases():
            results[case] = compare_case(name, params, with_tuples, rank)
        results["ddp"] = compare_ddp_step(rank)
        results["on_main"] = error_on_every_rank(rank)
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()
