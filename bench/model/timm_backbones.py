"""Backbones through timm: `model.backbone: timm/<name>` (any `timm.list_models()` name, with or without a
pretrained tag, e.g. `timm/vit_small_patch16_224.dino`, `timm/convnext_tiny.fb_in22k`).

The trunk is `timm.create_model(name, num_classes=0)`: its output is the model's pooled pre-logits feature,
which is our Conv layer: global average pooling for CNNs (ConvNeXt, ResNet), the final class token (or the
pooled tokens, as the model's `global_pool` says) after the last norm for transformers (ViT, DINO, DINOv2,
CLIP). Its size is read from the built model (`num_features`), the input normalisation from the model's
pretrained config. Transformers with a fixed input size are built with `dynamic_img_size=True`, so any
`data.image_size` works (position embeddings are interpolated).

Weights are never downloaded during a run: they are read from the Hugging Face cache (where
`dmlbench weights fetch timm/<name>` puts them), from the torch hub cache for older timm weights published
as URLs, or from `model.weights_path`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dmlbench.data.transforms import Normalization
from dmlbench.errors import MissingModuleError, UnknownNameError, WeightsMissingError, did_you_mean
from dmlbench.extras import install_hint

PREFIX = "timm/"
INSTALL_HINT = install_hint("timm")
# The files timm reads from a Hugging Face weights repository, in the order it tries them.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def require_timm() -> Any:
    if importlib.util.find_spec("timm") is None:
        raise MissingModuleError(f"timm backbones need the package timm, which is not installed: {INSTALL_HINT}")
    import timm

    return timm


def check_name(name: str) -> None:
    """UnknownNameError (did-you-mean from timm's model list) for a name timm does not know."""
    timm = require_timm()
    from timm.models import split_model_name_tag

    arch, _tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        hint = did_you_mean(arch, timm.list_models(), PREFIX)
        raise UnknownNameError(f"unknown timm model '{name}'{hint} (see timm.list_models())")


def pretrained_cfg(name: str) -> Any:
    require_timm()
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise UnknownNameError(f"timm model '{name}' has no pretrained weights config; name one with a tag")
    return cfg


def normalization(name: str) -> Normalization:
    """The (mean, std) the model's pretrained weights expect (three channels)."""
    cfg = pretrained_cfg(name)
    mean, std = (float(v) for v in cfg.mean), (float(v) for v in cfg.std)
    (m0, m1, m2), (s0, s1, s2) = mean, std
    return (m0, m1, m2), (s0, s1, s2)


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def weights_location(name: str) -> tuple[Path | None, str]:
    """(cached weights file or None, where to put it): the Hugging Face cache for weights hosted there,
    else the torch hub cache."""
    cfg = pretrained_cfg(name)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id = cfg.hf_hub_id.split("@")[0]
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        for filename in files:
            found = try_to_load_from_cache(repo_id, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), ""
        folder = hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"
        return None, f"the file '{files[0]}' of the Hugging Face repository {repo_id} in the cache folder '{folder}'"
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        return (path if path.is_file() else None), f"the file '{path.name}' in the folder '{path.parent}'"
    raise WeightsMissingError(f"timm model '{name}' publishes no pretrained weights; set model.pretrained=false")


def locate_weights(name: str, weights_path: str | None) -> Path:
    """The weights file a pretrained timm trunk loads; WeightsMissingError naming the file and folder."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"model.weights_path '{path}' for timm/{name} is not a file")
        return path
    found, where = weights_location(name)
    if found is None:
        raise WeightsMissingError(
            f"pretrained weights for timm/{name} not found offline: put {where} "
            f"(on a machine with internet: dmlbench weights fetch {PREFIX}{name}), "
            "or set model.weights_path=/path/to/file, or model.pretrained=false to train from scratch."
        )
    return found


def build(name: str, weights: Path | None = None) -> nn.Module:
    """The trunk (classifier removed, output (B, num_features)); with `weights`, loaded from that local file
    through timm's own loader (its checkpoint filters adapt e.g. position embeddings)."""
    timm = require_timm()
    kwargs: dict[str, Any] = {"num_classes": 0}
    if weights is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights), "hf_hub_id": None, "url": None})
    if pretrained_cfg(name).fixed_input_size:
        try:
            return timm.create_model(name, dynamic_img_size=True, **kwargs)
        except TypeError:  # a fixed-size model without dynamic sizes: built as published
            pass
    return timm.create_model(name, **kwargs)


def fetch(name: str) -> Path:
    """Download the weights of timm/<name> into the cache runs read (needs internet); returns the file."""
    check_name(name)
    cfg = pretrained_cfg(name)
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download

        repo_id = cfg.hf_hub_id.split("@")[0]
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        errors = []
        for filename in files:
            try:
                return Path(hf_hub_download(repo_id, filename))
            except Exception as err:  # the next file name, as timm tries them
                errors.append(f"{filename}: {err}")
        raise OSError(f"could not download timm/{name} from {repo_id}: {'; '.join(errors)}")
    path, _where = weights_location(name)
    if path is not None:
        return path
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(cfg.url, str(target), progress=False)
    return target
