"""The training step on its own: frozen BatchNorm really stays frozen, and an unfrozen one does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.configs import tiny_run_config
from torch import nn

from dmlbench.config import config_from_dict
from dmlbench.train import build_trainer, prepare


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().clone()
        for name, tensor in model.trunk.state_dict().items()
        if name.split(".")[-1] in ("running_mean", "running_var", "weight", "bias") and "bn" in name
    }


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_freeze_bn_keeps_batchnorm_statistics_and_affine_parameters(tiny_synthshop: Path, tmp_path: Path, freeze_bn: bool) -> None:
    torch.set_num_threads(1)
    cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, model={"freeze_bn": freeze_bn}, train={"lr": 1e-2}))
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    trainer = build_trainer(parts)
    bn_params = {id(m.weight) for m in trainer.model.trunk.modules() if isinstance(m, nn.BatchNorm2d)}
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert bool(bn_params & in_optimizer) is not freeze_bn  # frozen BN parameters are not even optimised
    before_bn = _bn_state(trainer.model)
    conv_before = trainer.model.trunk.conv1.weight.detach().clone()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(18, 3, 32, 32, generator=gen) * 2 + 1  # statistics far from the initial 0 / 1
    labels = torch.arange(6).repeat_interleave(3)
    for _ in range(2):
        trainer.model.train()
        loss, grad_norm = trainer.step(images, labels, None, None)
        assert torch.isfinite(torch.tensor([loss, grad_norm])).all()
    after_bn = _bn_state(trainer.model)
    assert not torch.equal(trainer.model.trunk.conv1.weight, conv_before)  # the rest of the trunk trains
    changed = [name for name in before_bn if not torch.equal(before_bn[name], after_bn[name])]
    if freeze_bn:
        assert changed == []
        assert all(not m.training for m in trainer.model.trunk.modules() if isinstance(m, nn.BatchNorm2d))
    else:
        assert any(n.endswith("running_mean") for n in changed) and any(n.endswith("weight") for n in changed)


def test_augmentation_depends_only_on_the_item_seed(tiny_synthshop: Path, tmp_path: Path) -> None:
    from dmlbench.data.dataset import ImageDataset
    from dmlbench.train import SeededViews, augmentation_seeds, image_transform

    cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path))
    parts = prepare(cfg, log=lambda _line: None, check_images=False)
    views = SeededViews(ImageDataset(parts.index, parts.train_positions, image_transform(cfg, train=True)))
    seeds = augmentation_seeds(cfg.seed, epoch=0, step=0, count=8)
    rng_before = torch.get_rng_state()
    first = [views[(0, seed)][0] for seed in seeds]
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG stream is untouched
    torch.manual_seed(123)  # whatever the global RNG holds, the same seed gives the same crop and flip
    assert all(torch.equal(views[(0, seed)][0], image) for seed, image in zip(seeds, first, strict=True))
    distinct = {image.numpy().tobytes() for image in first}
    assert len(distinct) >= 6  # 8 seeds: (almost) all different random crops / flips of the same image


def test_bf16_autocast_runs_the_amp_path_on_cpu(tiny_synthshop: Path, tmp_path: Path) -> None:
    """train.amp=bf16 autocasts on CPU too, so the AMP step (bf16 forward, fp32 loss) is exercised here."""
    torch.set_num_threads(1)
    images = torch.randn(18, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6).repeat_interleave(3)
    results = {}
    for amp in ("off", "bf16"):
        cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, train={"amp": amp, "device": "cpu"}))
        trainer = build_trainer(prepare(cfg, log=lambda _line: None, check_images=False))
        dtypes: list[torch.dtype] = []
        trainer.model.trunk.conv1.register_forward_hook(lambda _m, _i, out, seen=dtypes: seen.append(out.dtype))
        results[amp] = trainer.step(images, labels, None, None)
        assert dtypes == [torch.bfloat16 if amp == "bf16" else torch.float32]
    (loss_fp32, _), (loss_bf16, norm_bf16) = results["off"], results["bf16"]
    assert loss_bf16 == pytest.approx(loss_fp32, rel=0.05) and norm_bf16 > 0


def test_fp16_on_cpu_is_refused_before_any_work(tiny_synthshop: Path, tmp_path: Path) -> None:
    from dmlbench.config import ConfigError

    cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, train={"amp": "fp16", "device": "cpu"}))
    with pytest.raises(ConfigError, match="train.amp=fp16 needs a CUDA device"):
        prepare(cfg, log=lambda _line: None, check_images=False)


def test_deterministic_switch_is_set_both_ways(tiny_synthshop: Path, tmp_path: Path) -> None:
    """Process-wide torch switches follow each run's config (an inline sweep runs several in one process)."""
    try:
        for deterministic in (False, True, False):
            cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, train={"deterministic": deterministic}))
            build_trainer(prepare(cfg, log=lambda _line: None, check_images=False))
            assert torch.are_deterministic_algorithms_enabled() is deterministic
            assert torch.backends.cudnn.benchmark is not deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
