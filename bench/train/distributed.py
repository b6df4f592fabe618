"""Data-parallel training (`train.distributed`) whose losses see the whole global batch.

Every process plans the same global batch (the sampler is deterministic from the seed), loads its
contiguous shard of it (`shard_rows`), and runs the model on that shard. Before the loss, the
embeddings and attribute logits are all-gathered with an autograd function whose backward hands each
process the gradient of its own rows (`gather_rows`), and the labels, attribute targets and predefined
triplets are gathered alongside (triplets re-indexed to positions in the global batch). Every process
then computes the same loss on the same global batch, so its value and the gradient of every embedding
equal those of a one-process run of that batch. DistributedDataParallel normally *averages* parameter
gradients over processes; here each process's parameter gradient is already its share of the
single-process gradient, so the gradients are *summed* instead (`sum_allreduce_hook`).

The launcher (torchrun, or submitit on SLURM through `submitit.helpers.TorchDistributedEnvironment`)
describes the processes in the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
`World.from_environment` reads it. Without those variables a distributed config runs as one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dmlbench.errors import ConfigError

# The environment a launcher sets for torch.distributed's env:// initialisation.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# The other processes wait in their next collective while process 0 validates or writes a checkpoint.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one process that writes the run folder (log, history, checkpoint, metrics, DONE)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def on_main(self, action: Callable[[], None]) -> None:
        """Run `action` in process 0 only; when it raises, every process raises the same error (instead
        of the others waiting in their next collective until the timeout)."""
        error: Exception | None = None
        if self.is_main:
            try:
                action()
            except Exception as err:
                error = err
        if self.distributed:
            box: list[Exception | None] = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise error

    @classmethod
    def from_environment(cls) -> World:
        """The launcher's description of the processes; one process when it set none."""
        if not all(os.environ.get(k) for k in LAUNCH_VARIABLES):
            return _submitit_world() or cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def world_for(enabled: bool) -> World:
    """The processes of a run: the launcher's when `train.distributed` is on; one process when it is off,
    refusing a launch of several processes (each would train the whole run into the same folder)."""
    world = World.from_environment()
    if not enabled and world.distributed:
        raise ConfigError(
            f"this run was started as {world.size} processes (torchrun, or SLURM tasks) but train.distributed "
            "is false: set train.distributed: true, or start one process (one task per cell)"
        )
    return world if enabled else World()


def _submitit_world() -> World | None:
    """Inside a submitit job with several tasks: export its torch.distributed variables (rank, world
    size, master address and a port derived from the job id) and return them; else None."""
    try:
        import submitit
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:  # pragma: no cover - submitit is a core dependency
        return None
    env = submitit.JobEnvironment() if os.environ.get("SUBMITIT_EXECUTOR") else None
    if env is None or env.num_tasks < 2:
        return None
    exported = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return World(exported.rank, exported.world_size, exported.local_rank)


def join(world: World, device: torch.device) -> torch.device:
    """Start the process group (nccl on CUDA, gloo on CPU); returns this process's device."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=world.rank,
            world_size=world.size,
            timeout=COLLECTIVE_TIMEOUT,
        )
    return device


def leave() -> None:
    """Leave the process group this process joined, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_loss(loss_cls: type, loss_name: str, world: World) -> None:
    """Refuse, before training, a loss that says it cannot train data-parallel."""
    if world.distributed and getattr(loss_cls, "single_device_only", False):
        raise ConfigError(
            f"loss '{loss_name}' cannot train on several processes (it declares single_device_only); "
            f"run it with one process (this run has {world.size}) or set train.distributed: false"
        )


def shard_rows(batch_size: int, rank: int, size: int) -> slice:
    """The contiguous rows of a global batch that process `rank` of `size` loads (sizes differ by at most 1).

    >>> [shard_rows(7, r, 3) for r in range(3)]
    [slice(0, 3, None), slice(3, 5, None), slice(5, 7, None)]
    """
    base, extra = divmod(batch_size, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def shard_tuples(tuples: np.ndarray | None, rows: slice) -> np.ndarray | None:
    """The predefined triplets a shard carries: those whose anchor it holds, in global positions.

    >>> shard_tuples(np.array([[0, 1, 4], [3, 0, 2], [1, 0, 3]]), slice(0, 2)).tolist()
    [[0, 1, 4], [1, 0, 3]]
    """
    if tuples is None:
        return None
    anchors = tuples[:, 0]
    return tuples[(anchors >= rows.start) & (anchors < rows.stop)]


def _gather_sizes(rows: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([rows], dtype=torch.int64, device=device))
    return [int(s) for s in sizes]


def _all_gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every process's `tensor` (first dimensions `sizes`) in rank order."""
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class _GatherRows(torch.autograd.Function):
    """All-gather along rows; the backward returns this process's rows of the incoming gradient.

    Every process computes the same loss from the gathered tensor, so the gradient it receives is the
    full single-process gradient, and its own rows of it are exactly its rows' gradient: no
    communication (and no scaling) is needed on the way back.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        rank = dist.get_rank()
        ctx.rows = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return _all_gather_padded(tensor.detach(), sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad[ctx.rows].contiguous(), None


def gather_rows(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every process's rows of `tensor` in rank order; differentiable (gradients flow back to their owners)."""
    sizes = sizes if sizes is not None else _gather_sizes(tensor.shape[0], tensor.device)
    if tensor.requires_grad:
        return _GatherRows.apply(tensor, sizes)
    return _all_gather_padded(tensor, sizes)


class GlobalBatch(NamedTuple):
    """What the loss is called with: the whole global batch, whichever process computes it."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    tuples: torch.Tensor | None
    attr_logits: torch.Tensor | None
    attr_targets: torch.Tensor | None


def gather_batch(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    tuples: torch.Tensor | None,
    attr_logits: torch.Tensor | None,
    attr_targets: torch.Tensor | None,
) -> GlobalBatch:
    """Gather every process's shard into the global batch (rank order). `tuples` are positions into
    the global batch already (`shard_tuples`); each process contributes the triplets it holds."""
    sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
    all_tuples = None
    if tuples is not None:
        tuples = tuples.to(embeddings.device)
        all_tuples = _all_gather_padded(tuples, _gather_sizes(tuples.shape[0], embeddings.device))
    return GlobalBatch(
        gather_rows(embeddings, sizes),
        _all_gather_padded(labels, sizes),
        all_tuples,
        None if attr_logits is None else gather_rows(attr_logits, sizes),
        None if attr_targets is None else _all_gather_padded(attr_targets, sizes),
    )


def sum_allreduce_hook(state, bucket):  # no hints: DDP inspects them, and they would be strings here
    """DDP communication hook: sum the processes' gradients (DDP's default averages them).

    Unannotated on purpose: DDP checks the annotations against `dist.GradBucket` and
    `torch.futures.Future` objects, and `from __future__ import annotations` makes them strings.
    (state: unused; bucket: dist.GradBucket; returns torch.futures.Future[torch.Tensor].)

    Each process's gradient is its rows' share of the global-batch gradient, so the sum is the
    single-process gradient.
    """
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda fut: fut.value()[0])


@dataclass
class DataParallel:
    """The DDP wrapper of a run's model and the collectives the training step needs."""

    world: World
    ddp: nn.Module
    loss_parameters: list[torch.Tensor] = field(default_factory=list)

    def sync_loss_gradients(self) -> None:
        """Every process computed the loss's own parameters' gradient from the same global batch; rank
        0's copy is broadcast so that non-deterministic kernels cannot let the processes drift apart."""
        for p in self.loss_parameters:
            if p.grad is not None:
                dist.broadcast(p.grad, src=0)


def wrap_model(model: nn.Module, world: World, device: torch.device, loss_parameters: list[torch.Tensor]) -> DataParallel:
    """DDP over `model` with summed gradients. On CUDA, unfrozen BatchNorm becomes SyncBatchNorm (the
    global batch's statistics); torch has no CPU SyncBatchNorm, so on CPU BatchNorm sees its shard."""
    if device.type == "cuda" and not getattr(model, "freeze_bn", False):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        # An unused head (attribute logits the loss ignores, or the embedding under an attribute-only
        # loss) gets no gradient, as in a one-process run.
        find_unused_parameters=True,
    )
    ddp.register_comm_hook(None, sum_allreduce_hook)
    return DataParallel(world, ddp, list(loss_parameters))


def bn_note(model: nn.Module, device: torch.device) -> str | None:
    """What a CPU data-parallel run cannot reproduce exactly: per-shard BatchNorm statistics."""
    if device.type == "cuda" or getattr(model, "freeze_bn", False):
        return None
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return (
            "data-parallel on CPU: BatchNorm normalises each process's shard (SyncBatchNorm needs a GPU); "
            "set model.freeze_bn: true for batch statistics identical to a one-process run"
        )
    return None
