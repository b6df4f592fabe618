"""The config schema: dataclasses whose field types say what each key accepts.

An enumerated key is a `Literal[...]` (or `Annotated[str, Choices(...)]` where a pattern is also
allowed), so reading a config (`dmlbench.config.io`) rejects a misspelled value with a did-you-mean
message before any work starts. Registry names (loss, sampler, dataset, backbone) are plain `str`:
plugins may add names, so they are checked later (`check_names`), after the plugins are imported.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

Optimizer = Literal["adam", "adamw", "sgd"]
LrSchedule = Literal["none", "cosine", "step"]
Amp = Literal["auto", "bf16", "fp16", "off"]
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]
Backend = Literal["auto", "torch", "faiss-cpu", "faiss-gpu"]
Layer = Literal["emb", "fc", "conv"]
Protocol = Literal["query-gallery", "leave-one-out"]
TrackerName = Literal["tensorboard", "mlflow", "wandb"]
WandbMode = Literal["online", "offline"]
EvalSplit = Literal["test", "val"]
Tier = Literal["full", "head"]
Keep = Literal["weights", "full", "none"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
AMP_MODES: tuple[str, ...] = get_args(Amp)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
BACKENDS: tuple[str, ...] = get_args(Backend)
LAYERS: tuple[Layer, ...] = get_args(Layer)  # in the order tables list them
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
TRACKERS: tuple[str, ...] = get_args(TrackerName)


@dataclass(frozen=True)
class Choices:
    """Allowed values of a string key: one of `values`, or a full match of `pattern`."""

    values: tuple[str, ...]
    pattern: str | None = None
    pattern_help: str = ""  # how the pattern reads in an error message, e.g. "cuda:<index>"

    def allows(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return value in self.values or (self.pattern is not None and re.fullmatch(self.pattern, value) is not None)

    def known(self) -> tuple[str, ...]:
        return (*self.values, self.pattern_help) if self.pattern_help else self.values


@dataclass(frozen=True)
class Bounds:
    """The range of a numeric key, checked where the config is read (before anything is created):
    `low` <= value (< `low` excluded when `low_open`) and value <= `high`; floats must be finite.

    >>> Bounds(1, 2048).problem(0), Bounds(0, low_open=True).problem(float("nan")), Bounds(1).problem(3)
    ('must be >= 1', 'must be a finite number', None)
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    why: str = ""  # appended to the message, e.g. "(larger images do not fit in memory)"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None  # the type check names it
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}{f' {self.why}' if self.why else ''}"
        return None


# Sizes beyond these are typos (an extra zero), not experiments: 100000 px images end in a MemoryError.
MAX_IMAGE_SIZE = 2048
MAX_DIM = 65536
MAX_COUNT = 10**9  # epochs, batches, batch sizes, K
Size = Annotated[int, Bounds(1, MAX_DIM, why="(a typo?)")]
Count = Annotated[int, Bounds(1, MAX_COUNT)]
NonNegative = Annotated[int, Bounds(0, MAX_COUNT)]
Positive = Annotated[float, Bounds(0, low_open=True)]
NonNegativeFloat = Annotated[float, Bounds(0)]

DEVICE_CHOICES = Choices(("auto", "cpu", "cuda"), pattern=r"cuda:\d+", pattern_help="cuda:<index>")
Device = Annotated[str, DEVICE_CHOICES]


@dataclass
class DataConfig:
    dataset: str = "synthshop"  # a DATASETS registry name: synthshop, inshop, cub, sop
    root: str = "data/synthshop-tiny"  # dataset folder, relative to the working directory or absolute
    # square side fed to the network after resize/crop
    image_size: Annotated[int, Bounds(1, MAX_IMAGE_SIZE, why="(larger images do not fit in memory; a typo?)")] = 64
    # fraction of *training classes* held out as a validation split
    val_classes: Annotated[float, Bounds(0, 1, why="(a fraction of the training classes)")] = 0.0
    subset: Count | None = None  # deterministic subset of images per split (stated in the results)
    skip_bad_images: bool = False  # exclude (and count) unreadable images instead of stopping
    folds: NonNegative = 0  # k class-disjoint folds of the training classes (tuning); 0: none
    fold: NonNegative = 0  # which of the `folds` folds is the validation split "val"
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific loader options


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # a BACKBONES registry name
    pretrained: bool = False  # ImageNet weights from the torch hub cache or `weights_path`
    weights_path: str | None = None
    fc_dim: Size = 1024
    emb_dim: Size = 512
    freeze_bn: bool = False


@dataclass
class LossConfig:
    name: str = "bdl"  # a LOSSES registry name
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplerConfig:
    name: str = "batch-wise"  # a SAMPLERS registry name
    params: dict[str, Any] = field(default_factory=dict)
    batches_per_epoch: Count | None = None  # None: about one pass over the training images


@dataclass
class TrainConfig:
    # 0: evaluate the untrained model, a reference (the inshop-ms-batchhard preset's); negative is refused
    epochs: NonNegative = 2
    optimizer: Optimizer = "adam"
    lr: Positive = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = 0.9  # sgd only
    lr_schedule: LrSchedule = "none"
    grad_clip: Positive | None = None  # max gradient norm; None disables clipping
    amp: Amp = "auto"  # auto: bf16 on CUDA, off on CPU; bf16 on CUDA or CPU; fp16 on CUDA only
    device: Device = "auto"
    num_workers: Annotated[int, Bounds(0, 1024)] = 0
    deterministic: bool = True  # bit-exact reruns; false lets cuDNN pick its fastest (non-deterministic) kernels
    checkpoint_every_batches: Count | None = None  # also checkpoint mid-epoch (long epochs, preemptible jobs)
    compile: CompileMode = "off"  # torch.compile the model's forward
    # full: train the whole network; head: frozen pretrained backbone, cached features, head only
    # (the fast tier for loss ideas, dmlbench.train.head_tier)
    tier: Tier = "full"
    distributed: bool = False  # data-parallel over the processes a launcher (torchrun, submitit) started
    keep: Keep = "weights"  # after DONE: weights (model.pt), full (checkpoint.pt, resumable state), none


@dataclass
class EvalConfig:
    ks: list[Count] | None = None  # None: the dataset's standard K list
    layers: list[Layer] = field(default_factory=lambda: list(LAYERS))
    backend: Backend = "auto"  # auto: faiss-gpu on a GPU when installed, else torch
    batch_size: Count = 128
    every_epochs: NonNegative = 0  # validation every N epochs on the val split (0: never)
    split: EvalSplit = "test"  # val: evaluate the val split (tuning); test/query/gallery images are not even indexed


@dataclass
class TrackConfig:
    """Optional experiment trackers (`dmlbench.track`): where a run's curves are mirrored, never its result."""

    trackers: list[TrackerName] = field(default_factory=list)  # e.g. [tensorboard, mlflow]
    project: str = "dmlbench"  # W&B project; the MLflow experiment of a run that is no sweep cell
    tensorboard_dir: str | None = None  # None: <run folder>/tensorboard
    mlflow_uri: str | None = None  # a folder, sqlite:///file.db or http(s)://server; None: $MLFLOW_TRACKING_URI or ./mlruns
    wandb_mode: WandbMode = "online"  # offline: files only, upload later with `wandb sync`
    wandb_entity: str | None = None
    wandb_dir: str | None = None  # None: the run folder


@dataclass
class Config:
    name: str = ""  # free-form label shown in tables
    seed: int = 0
    output_dir: str = "runs"
    plugins: list[str] = field(default_factory=list)  # modules imported before building anything
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    track: TrackConfig = field(default_factory=TrackConfig)


# Keys that change where or how fast a run happens but not its result: left out of the run_id.
RUNTIME_KEYS = frozenset(
    {
        "name",
        "output_dir",
        "train.device",
        "train.num_workers",  # augmentation is seeded per image (dmlbench.train.augmentation_seeds)
        "train.checkpoint_every_batches",  # resume replays exactly
        "train.compile",
        "train.distributed",  # the loss sees the same global batch whatever the process count
        "train.keep",  # what stays on disk after DONE; added after run_ids existed, so every run_id is unchanged
        "eval.backend",
        "eval.batch_size",
        "track",  # trackers only mirror what the run folder holds
    }
)
# Keys added after runs were published: hashed into the run_id only when not at this default, so
# every earlier run keeps its id.
HASHED_WHEN_NOT_DEFAULT: dict[str, Any] = {"train.tier": "full", "data.folds": 0, "data.fold": 0, "eval.split": "test"}




def allowed_values(tp: Any) -> tuple[str, ...] | None:
    """The values an enumerated field type accepts (None for a free-form type); for messages and tests."""
    if typing.get_origin(tp) is Literal:
        return tuple(typing.get_args(tp))
    if typing.get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, Choices):
                return meta.values
    return None


def enumerated_keys(cls: type = Config, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Every enumerated config key (dotted) with its allowed values, read off the schema.

    >>> enumerated_keys()["eval.backend"]
    ('auto', 'torch', 'faiss-cpu', 'faiss-gpu')
    """
    out: dict[str, tuple[str, ...]] = {}
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(enumerated_keys(tp, f"{prefix}{name}."))
            continue
        if typing.get_origin(tp) is list:
            (tp,) = typing.get_args(tp)
        values = allowed_values(tp)
        if values is not None:
            out[f"{prefix}{name}"] = values
    return out
