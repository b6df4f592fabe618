"""`dmlbench weights fetch`: put pretrained weights where runs read them, on a machine with internet (a login
node), so that runs on compute nodes never download anything."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from dmlbench.errors import UsageError
from dmlbench.model import BACKBONES, timm_backbones, weights_location


def torchvision_url(name: str, weights_file: str) -> str:
    """The download URL of a registered torchvision backbone's ImageNet checkpoint (the one whose file
    name runs look for)."""
    for weights in torchvision.models.get_model_weights(name):
        if weights.url.rsplit("/", 1)[-1] == weights_file:
            return weights.url
    raise UsageError(f"torchvision publishes no weights file '{weights_file}' for {name}")


def fetch_weights(name: str) -> Path:
    """Download the weights of backbone `name` (a registered name or timm/<name>) into the cache runs read;
    returns the file. Already there: nothing is downloaded."""
    if name.startswith(timm_backbones.PREFIX):
        return timm_backbones.fetch(name.removeprefix(timm_backbones.PREFIX))
    spec = BACKBONES.get(name)
    if spec.packaged_weights is not None:
        return weights_location(name, None)  # shipped inside a pip package: installing it was the fetch
    path = weights_location(name, None)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(torchvision_url(name, spec.weights_file), str(path), progress=False)
    return path
