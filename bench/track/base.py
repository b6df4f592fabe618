"""The small interface every tracker implements, what a tracker run is told about its run, and the scalar
names all trackers share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class TrackerUnavailable(Exception):
    """A tracker that cannot be used now (not installed, server unreachable): the run goes on without it."""


@dataclass
class RunInfo:
    """What a tracker run is named and tagged by."""

    run_id: str  # dmlbench's run_id (the run folder's name)
    name: str  # display name: the config's `name`, else the run_id
    project: str  # track.project
    sweep: str | None = None  # the sweep a cell belongs to: an MLflow experiment, a W&B group
    grid: dict[str, Any] = field(default_factory=dict)  # the cell's grid keys: tags
    params: dict[str, str] = field(default_factory=dict)  # the flattened config: parameters

    def tags(self) -> dict[str, str]:
        tags = {"dmlbench.run_id": self.run_id}
        if self.sweep:
            tags["dmlbench.sweep"] = self.sweep
        tags.update({f"grid.{key}": str(value) for key, value in self.grid.items()})
        return tags


class Tracker(ABC):
    """One experiment tracker run mirroring one dmlbench run. Any method may raise: the caller
    (`dmlbench.track.Tracking`) turns the first error into one warning and stops using the tracker."""

    name: ClassVar[str]

    @abstractmethod
    def where(self) -> str:
        """Where its runs live (log dir, tracking URI, W&B project): a stored id is reused only there."""

    @abstractmethod
    def start(self, info: RunInfo, resume_id: str | None) -> str:
        """Open a new tracker run, or reopen `resume_id`; returns the id to store. Logs the parameters
        of a new run."""

    @abstractmethod
    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        """Scalars of one epoch (`step` = epoch number, from 1)."""

    @abstractmethod
    def log_final(self, scalars: dict[str, float], step: int, artifacts: list[Path]) -> None:
        """The test metrics of the finished run and its files (tables, plots, metrics.json, ...)."""

    @abstractmethod
    def close(self, ok: bool) -> None:
        """Finish the tracker run (marked failed when not `ok`); called once."""


def scalar_name(*parts: str) -> str:
    """One scalar name for every tracker: `/`-separated, `@` spelled out (MLflow rejects it).

    >>> scalar_name("test", "emb", "recall@1")
    'test/emb/recall_at_1'
    """
    return "/".join(parts).replace("@", "_at_")


def _numbers(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_numbers(f"{prefix}/{key}", value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[scalar_name(prefix, str(key))] = float(value)
    return out


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """The scalars of one history.jsonl row: train/loss, train/lr, train/time_s, loss_stats/*, sampler/*, val/*.

    >>> epoch_scalars({"epoch": 1, "loss": 0.5, "lr": 0.1, "stats": {"pos_sim": 0.2}, "val": {"recall@1": 0.3}})
    {'train/loss': 0.5, 'train/lr': 0.1, 'loss_stats/pos_sim': 0.2, 'val/recall_at_1': 0.3}
    """
    out = _numbers("train", {k: row[k] for k in ("loss", "lr", "time_s") if row.get(k) is not None})
    out.update(_numbers("loss_stats", row.get("stats") or {}))
    out.update(_numbers("sampler", row.get("sampler") or {}))
    out.update(_numbers("val", row.get("val") or {}))
    return out


def final_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Test metrics per layer and K from metrics.json: test/<layer>/<metric>_at_<K>.

    >>> final_scalars({"layers": {"emb": {"recall@1": 0.5, "map@r": 0.25}}})
    {'test/emb/recall_at_1': 0.5, 'test/emb/map_at_r': 0.25}
    """
    out: dict[str, float] = {}
    for layer, values in (metrics.get("layers") or {}).items():
        out.update(_numbers(f"test/{layer}", values))
    return out


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as dotted parameter names and string values (the `track` section left out).

    >>> flat_params({"seed": 0, "loss": {"name": "bdl", "params": {}}, "track": {"trackers": ["mlflow"]}})
    {'seed': '0', 'loss.name': 'bdl', 'loss.params': '{}'}
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        if not prefix and key == "track":
            continue
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out
