"""timm backbones (`model.backbone: timm/<name>`) with random initialisation on CPU: a ViT and a ConvNeXt
train, every layer is evaluated, a resumed ViT run ends on the numbers of an uninterrupted one; weights are
read offline from model.weights_path or the Hugging Face cache, and missing ones name the cache folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.cli import run_cli
from support.configs import tiny_run_config, write_config
from support.paths import REPO

from dmlbench import rundir
from dmlbench.config import config_from_dict, run_id
from dmlbench.model import BACKBONES, EmbeddingNet
from dmlbench.train.run import train_run

pytest.importorskip("timm")

VIT, CONVNEXT = "timm/vit_tiny_patch16_224", "timm/convnext_atto"


def _config(data: Path, out: Path, backbone: str, epochs: int) -> dict:
    return tiny_run_config(
        data, out, model={"backbone": backbone}, train={"epochs": epochs, "lr": 1e-3}, sampler={"batches_per_epoch": 3}
    )


def test_feature_size_and_normalisation_come_from_the_model() -> None:
    vit, convnext = BACKBONES.get(VIT), BACKBONES.get(CONVNEXT)
    assert vit.feature_dim is None and convnext.feature_dim is None  # never hard-coded
    assert vit.input_normalization == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # augreg ViT: [-1, 1] inputs
    assert convnext.input_normalization == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for name, dim in ((VIT, 192), (CONVNEXT, 320)):
        out = EmbeddingNet(name, fc_dim=16, emb_dim=8)(torch.randn(2, 3, 48, 48))  # any input size
        assert out["conv"].shape == (2, dim) and out["emb"].shape == (2, 8)


@pytest.mark.slow
def test_vit_and_convnext_train_evaluate_every_layer_and_resume(tiny_synthshop: Path, tmp_path: Path) -> None:
    for backbone in (VIT, CONVNEXT):
        one = _config(tiny_synthshop, tmp_path / "one", backbone, 1)
        one["train"]["keep"] = "full"  # its checkpoint seeds the resume below (the default keeps weights only)
        result = train_run(config_from_dict(one), progress=False)
        assert set(result["layers"]) == {"emb", "fc", "conv"}
        for layer in ("emb", "fc", "conv"):
            assert 0.0 <= result["layers"][layer]["recall@1"] <= 1.0

    # Resume: the 1-epoch ViT run's checkpoint is epoch 1 of the 2-epoch run; continuing from it must end
    # on the uninterrupted 2-epoch run's numbers.
    two = config_from_dict(_config(tiny_synthshop, tmp_path / "full", VIT, 2))
    one_dir = next(p for p in (tmp_path / "one").iterdir() if (p / "config.yaml").read_text().count("vit_tiny"))
    resumed_dir = tmp_path / "resumed" / "run"
    resumed_dir.mkdir(parents=True)
    for name in ("checkpoint.pt", "history.jsonl"):
        shutil.copy(one_dir / name, resumed_dir / name)
    resumed = train_run(two, resumed_dir, progress=False)
    # A resume, not a deterministic restart (which would end on the same numbers): epoch 1 is not trained
    # again (never logged here), its history row is the copied one, and epoch 2 is trained once.
    log = (resumed_dir / "run.log").read_text()
    assert "resuming run after epoch 1" in log and "epoch 1/2 loss" not in log and log.count("epoch 2/2 loss") == 1
    full_dir = tmp_path / "full" / run_id(two)
    full = train_run(two, progress=False)
    assert resumed["layers"] == full["layers"]
    resumed_rows, full_rows = rundir.read_history(resumed_dir), rundir.read_history(full_dir)
    assert resumed_rows[0] == rundir.read_history(one_dir)[0]
    assert [r["loss"] for r in resumed_rows] == [r["loss"] for r in full_rows]


def test_missing_timm_weights_name_the_cache_folder(tiny_synthshop: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "run.yaml", _config(tiny_synthshop, tmp_path / "runs", VIT, 1))
    proc = run_cli("train", str(cfg), "--quiet", "model.pretrained=true", env={"HF_HUB_CACHE": str(tmp_path / "hf")})
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "model.safetensors" in line and str(tmp_path / "hf" / "models--timm--vit_tiny_patch16_224") in line
    assert "dmlbench weights fetch timm/vit_tiny_patch16_224" in line
    assert not (tmp_path / "runs").exists()  # failed before any work


def test_timm_weights_load_from_weights_path_and_the_hf_cache(tmp_path: Path) -> None:
    """A weights file is loaded through timm's own loader, from model.weights_path and from the Hugging Face
    cache layout (refs/main -> snapshots/<rev>/model.safetensors), with no network."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = EmbeddingNet(CONVNEXT, fc_dim=16, emb_dim=8).trunk
    weights = {k: v.contiguous() for k, v in source.state_dict().items()}
    snapshot = tmp_path / "hf" / "models--timm--convnext_atto.d2_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(weights, snapshot / "model.safetensors")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")

    loaded = EmbeddingNet(CONVNEXT, fc_dim=16, emb_dim=8, weights_path=str(snapshot / "model.safetensors")).trunk
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in weights.items())
    code = (
        "import torch, sys; from dmlbench.model import EmbeddingNet; "
        f"net = EmbeddingNet({CONVNEXT!r}, fc_dim=16, emb_dim=8, pretrained=True); "
        "torch.save(net.trunk.state_dict(), sys.argv[1])"
    )
    out = tmp_path / "from_cache.pt"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    from_cache = torch.load(out, weights_only=True)
    assert all(torch.equal(from_cache[k], v) for k, v in weights.items())


def test_weights_fetch_rejects_an_unknown_name_before_downloading() -> None:
    proc = run_cli("weights", "fetch", "timm/vit_tiny_patch16_22")
    assert proc.returncode == 2
    assert "did you mean 'timm/vit_tiny_patch16_224'" in proc.stderr and "Traceback" not in proc.stderr
