"""The network of SGML Fig. 3: backbone -> pooled Conv feature -> FC -> {Emb, Attr}; forward returns every layer."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from dmlbench.model.backbones import BACKBONES, check_weights, weights_location


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
