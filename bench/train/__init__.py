"""Training one run: config -> (dataset, sampler, model, loss) -> train -> per-layer features -> metrics.

- `parts`: `prepare` checks and builds what a run needs (`RunParts`), before any training.
- `trainer`: model, loss, optimizer and the training step (`Trainer`, `build_trainer`).
- `pipeline`: the schedule of batches, seeded augmentation and the one DataLoader.
- `checkpoint`: save / restore everything a resume needs.
- `features`: per-layer features, their metrics and the embedding sample.
- `run`: `train_run`, resume + epochs + validation + final evaluation into a run folder.

The checks that need no data (`check_names`, `preflight`) live in `dmlbench.validation.preflight`.
"""

from dmlbench.errors import NonFiniteLossError
from dmlbench.train.parts import RunParts, prepare
from dmlbench.train.pipeline import (
    LoadedBatch,
    SeededViews,
    augmentation_seeds,
    batch_tensors,
    image_transform,
    run_schedule,
    training_loader,
)
from dmlbench.train.run import train_run
from dmlbench.train.trainer import Trainer, build_trainer
from dmlbench.validation.preflight import check_names, preflight

__all__ = [
    "LoadedBatch",
    "NonFiniteLossError",
    "RunParts",
    "SeededViews",
    "Trainer",
    "augmentation_seeds",
    "batch_tensors",
    "build_trainer",
    "check_names",
    "image_transform",
    "prepare",
    "preflight",
    "run_schedule",
    "train_run",
    "training_loader",
]
