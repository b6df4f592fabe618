"""The model, loss and optimizer of one run and its training step (shared with `bench-train`)."""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dmlbench import losses
from dmlbench.config import Config
from dmlbench.errors import NonFiniteLossError
from dmlbench.model import EmbeddingNet
from dmlbench.train.distributed import DataParallel, gather_batch
from dmlbench.train.parts import RunParts


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: Config, params: list[dict[str, Any]]) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    epochs = max(cfg.train.epochs, 1)
    if cfg.train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.train.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs * 2 / 3)), gamma=0.1)
    return None


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: `auto` is bf16 on CUDA and off elsewhere; an explicit bf16 also runs on CPU."""
    amp = cfg.train.amp
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast_context(cfg: Config, device: torch.device) -> Any:
    dtype = amp_dtype(cfg, device)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)



@dataclass
class Trainer:
    """The model, loss and optimizer of one run, and the training step they share with `bench-train`."""

    cfg: Config
    device: torch.device
    model: EmbeddingNet
    loss_fn: losses.MetricLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    params: Sequence[torch.Tensor]
    parallel: DataParallel | None = None  # data-parallel run: DDP model and the global-batch gather

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        tuples: torch.Tensor | None,
        attr_targets: torch.Tensor | None,
        where: str = "",
    ) -> tuple[float, float]:
        """One optimisation step; returns (loss, gradient norm). NaN/inf stops the run before the update."""
        cfg = self.cfg
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(cfg, self.device):
            out = (self.model if self.parallel is None else self.parallel.ddp)(images)
        emb, attr_logits = out["emb"].float(), None if out["attr"] is None else out["attr"].float()
        if self.parallel is not None:  # the loss sees the global batch, whichever process computes it
            emb, labels, tuples, attr_logits, attr_targets = gather_batch(emb, labels, tuples, attr_logits, attr_targets)
        loss = self.loss_fn(emb, labels, tuples=tuples, attr_logits=attr_logits, attr_targets=attr_targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at {where} ({cfg.loss.name}); the model was not updated and nothing was "
                "written for this epoch. Lower train.lr, set train.grad_clip, or check the loss parameters; "
                "a restarted run resumes from its last checkpoint."
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.parallel is not None:
            self.parallel.sync_loss_gradients()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip or float("inf"))
        if not torch.isfinite(grad_norm):
            if self.scaler is not None:  # fp16 overflow: the scaler skips this step and lowers its scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
                return float(loss.item()), float("nan")
            raise NonFiniteLossError(
                f"gradient norm is {grad_norm.item()} at {where} ({cfg.loss.name}); the model was not updated. "
                "Lower train.lr or set train.grad_clip."
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return float(loss.item()), float(grad_norm)


def loss_parameter_group(cfg: Config, loss_fn: losses.MetricLoss, notes: list[str]) -> dict[str, Any] | None:
    """The optimizer group of the loss's trainable parameters (lr = train.lr x the loss's lr_multiplier),
    None when it has none. A loss that owns parameters without declaring `has_parameters = True` still
    gets them trained; the note (logged, and kept in metrics.json) says to declare it."""
    trainable = [p for p in loss_fn.parameters() if p.requires_grad]
    if not trainable:
        return None
    if not loss_fn.has_parameters:
        note = (
            f"loss '{cfg.loss.name}' owns trainable parameters but does not set has_parameters = True: "
            "they are trained anyway (own optimizer group); declare the flag in the loss class"
        )
        notes.append(note)
        warnings.warn(note, stacklevel=2)
    multiplier = float(getattr(loss_fn, "lr_multiplier", 1.0))
    group: dict[str, Any] = {"params": trainable}
    if multiplier != 1.0:  # the group otherwise takes the optimizer's default lr, as it always has
        group["lr"] = cfg.train.lr * multiplier
    return group


def build_trainer(parts: RunParts) -> Trainer:
    cfg, device = parts.cfg, parts.device
    # Process-wide switches, set both ways: an inline sweep runs several configs in one process.
    # Deterministic: bit-exact reruns and resumes. Not: cuDNN benchmarks and picks the fastest kernels.
    if cfg.train.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS needs it
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    seed_everything(cfg.seed)
    model = EmbeddingNet(
        cfg.model.backbone,
        fc_dim=cfg.model.fc_dim,
        emb_dim=cfg.model.emb_dim,
        num_attributes=parts.index.num_attributes,
        pretrained=cfg.model.pretrained,
        weights_path=cfg.model.weights_path,
        freeze_bn=cfg.model.freeze_bn,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.compile != "off":
        # In place: the forward is compiled, parameter names (state_dict, checkpoints) stay unchanged.
        model.compile(mode=None if cfg.train.compile == "default" else cfg.train.compile)
    loss_fn = losses.build(cfg.loss.name, parts.loss_harness(), **cfg.loss.params).to(device)
    model.train()  # applies model.freeze_bn, so frozen BatchNorm parameters stay out of the optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    param_groups: list[dict[str, Any]] = [{"params": params}]
    loss_params = loss_parameter_group(cfg, loss_fn, parts.notes)
    if loss_params is not None:
        param_groups.append(loss_params)
        params = params + list(loss_params["params"])
    optimizer = build_optimizer(cfg, param_groups)
    scheduler = build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and cfg.train.amp == "fp16" else None
    return Trainer(cfg, device, model, loss_fn, optimizer, scheduler, scaler, params)


