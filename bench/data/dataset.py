"""The torch Dataset over a DatasetIndex: decode, optional box crop, transform."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dmlbench.data.base import DatasetError, DatasetIndex
from dmlbench.data.images import crop_box, load_rgb


class ImageDataset(Dataset):
    """Item i -> (image tensor, dataset index positions[i]); the index lets the caller look up labels.

    ``crop_bboxes``: None follows the index (the loaders attach boxes only when their crop option is
    on); True/False forces it.
    """

    def __init__(
        self,
        index: DatasetIndex,
        positions: np.ndarray,
        transform: Callable[[Image.Image], torch.Tensor],
        crop_bboxes: bool | None = None,
    ) -> None:
        self.index = index
        self.positions = np.asarray(positions, dtype=np.int64)
        self.transform = transform
        crop = index.bboxes is not None if crop_bboxes is None else crop_bboxes
        if crop and index.bboxes is None:
            raise DatasetError(f"{index.name}: bounding-box crop requested but the index has no boxes")
        self.crop_bboxes = crop

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pos = int(self.positions[i])
        img = load_rgb(self.index.root / self.index.paths[pos])
        if self.crop_bboxes:
            assert self.index.bboxes is not None
            img = crop_box(img, self.index.bboxes[pos])
        return self.transform(img), pos
