"""Image -> tensor transforms for training and evaluation, and the input normalisations backbones use."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]  # per-channel (mean, std)
IMAGENET_NORMALIZATION: Normalization = (IMAGENET_MEAN, IMAGENET_STD)
# Eval resize side = image_size * 8/7, the 256 -> 224 ratio of the usual ImageNet evaluation.
EVAL_RESIZE_RATIO = 256 / 224


def build_transform(
    image_size: int, train: bool, normalization: Normalization = IMAGENET_NORMALIZATION
) -> Callable[[Image.Image], torch.Tensor]:
    """Train: random resized crop (scale 0.9-1.0) + horizontal flip, as SGML. Eval: resize + centre crop.

    ``normalization``: the input scaling the backbone's pretrained weights were trained with.
    """
    normalize = transforms.Normalize(*normalization)
    if train:
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size, scale=(0.9, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
    return transforms.Compose(
        [
            transforms.Resize(round(image_size * EVAL_RESIZE_RATIO)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            normalize,
        ]
    )
