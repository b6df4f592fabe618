"""Backbone -> pooled Conv feature -> FC -> {Emb, Attr} (SGML Fig. 3); forward returns every layer.

Backbones: the torchvision ones registered here, and any timm model as `timm/<name>`
(`dmlbench.model.timm_backbones`).

Pretrained ImageNet weights are never downloaded: they are read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``), from a pip package that ships them (``efficientnet_lite0``), or
from ``model.weights_path``; when missing, building the model fails before training with a message naming
the exact file and folder (or the pip command).

Modules: `backbones` (the registry, weights lookup), `network` (`EmbeddingNet`), `timm_backbones`, `fetch`.
"""

from dmlbench.model.backbones import (
    BACKBONES,
    Backbone,
    BackboneRegistry,
    check_weights,
    require_packages,
    weights_location,
)
from dmlbench.model.network import EmbeddingNet

__all__ = ["BACKBONES", "Backbone", "BackboneRegistry", "EmbeddingNet", "check_weights", "require_packages", "weights_location"]
