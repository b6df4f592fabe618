"""Backbone -> pooled Conv feature -> FC -> {Emb, Attr} (SGML Fig. 3); forward returns every layer.

Pretrained ImageNet weights are never downloaded: they are read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``) or from ``model.weights_path``; when missing, building the model
fails before training with a message naming the exact file and folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from bench.registry import Registry


class WeightsMissingError(FileNotFoundError):
    """Pretrained weights were asked for but the file is not on disk."""


@dataclass(frozen=True)
class Backbone:
    """How to build a torchvision trunk whose output is the pooled Conv feature."""

    build: Callable[[], nn.Module]  # returns the trunk without its classifier, output (B, feature_dim)
    feature_dim: int
    weights_file: str  # torchvision's ImageNet checkpoint file name (as in the torch hub cache)


BACKBONES: Registry[Backbone] = Registry("backbone")


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


def weights_location(backbone: str, weights_path: str | None) -> Path:
    """Where the ImageNet weights of `backbone` are expected."""
    if weights_path:
        return Path(weights_path).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES.get(backbone).weights_file


def check_weights(backbone: str, pretrained: bool, weights_path: str | None) -> None:
    """Fail fast (before any data loading or training) when pretrained weights are missing."""
    if not pretrained and not weights_path:
        return
    path = weights_location(backbone, weights_path)
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
        self.trunk = spec.build()
        if pretrained or weights_path:
            check_weights(backbone, pretrained, weights_path)
            state = torch.load(weights_location(backbone, weights_path), map_location="cpu", weights_only=True)
            missing, _unexpected = self.trunk.load_state_dict(state, strict=False)
            if missing:
                raise ValueError(f"weights file for {backbone} lacks {len(missing)} trunk tensors, e.g. {missing[:3]}")
        self.fc = nn.Sequential(nn.Linear(spec.feature_dim, fc_dim), nn.ReLU(inplace=True))
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
