"""The three trackers: TensorBoard event files, MLflow (folder, SQLite or server), Weights & Biases.

Each imports its package only when it starts, so none is needed unless configured; a missing package is a
`TrackerUnavailable` naming the extra to install.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmlbench.config import TrackConfig
from dmlbench.extras import install_hint
from dmlbench.track.base import RunInfo, Tracker, TrackerUnavailable


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise TrackerUnavailable(f"{err}; install it with: {install_hint(extra)}") from None


class TensorBoardTracker(Tracker):
    """Event files in `track.tensorboard_dir/<run_id>` (default `<run folder>/tensorboard`); a resumed run
    appends new event files to the same folder, which TensorBoard shows as one run."""

    name = "tensorboard"

    def __init__(self, cfg: TrackConfig, run_dir: Path) -> None:
        base = cfg.tensorboard_dir
        self.log_dir = (Path(base) / run_dir.name if base else run_dir / "tensorboard").resolve()
        self.writer: Any = None
        self.params: dict[str, str] = {}

    def where(self) -> str:
        return str(self.log_dir)

    def start(self, info: RunInfo, resume_id: str | None) -> str:
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.params = info.params
        if resume_id is None:
            table = "\n".join(f"    {key}: {value}" for key, value in info.params.items())
            self.writer.add_text("config", table, global_step=0)
            for key, value in info.tags().items():
                self.writer.add_text(f"tags/{key}", value, global_step=0)
        return str(self.log_dir)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_final(self, scalars: dict[str, float], step: int, artifacts: list[Path]) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.log_scalars(scalars, step)
        # The HParams dashboard: the config beside the final metrics (written into this run's own folder).
        for summary in hparams(self.params, scalars):
            self.writer.file_writer.add_summary(summary)
        for path in artifacts:
            if path.suffix in (".md", ".txt"):
                self.writer.add_text(f"files/{path.name}", path.read_text(), global_step=step)
            elif path.suffix == ".png":
                import numpy as np
                from PIL import Image

                image = np.asarray(Image.open(path).convert("RGB"))
                self.writer.add_image(f"plots/{path.stem}", image, global_step=step, dataformats="HWC")
        self.writer.flush()

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.close()


class MlflowTracker(Tracker):
    """An MLflow run in the experiment named by the sweep (else `track.project`), through `MlflowClient`
    (no global active run, so runs of an inline sweep never mix)."""

    name = "mlflow"
    PROBE_TIMEOUT_S = 5.0

    def __init__(self, cfg: TrackConfig, run_dir: Path) -> None:
        self.uri = cfg.mlflow_uri
        self.client: Any = None
        self.run_id: str | None = None
        if self.uri and "://" not in self.uri.removeprefix("file://"):
            # A folder is MLflow's file store, which MLflow 3 refuses unless opted in (it recommends SQLite)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    def where(self) -> str:
        if self.uri:
            return self.uri
        mlflow = _require("mlflow", "mlflow")
        return str(mlflow.get_tracking_uri())

    def _probe(self, uri: str) -> None:
        """An unreachable server would stall every call in MLflow's retries: check once, quickly."""
        if not uri.startswith(("http://", "https://")):
            return
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=self.PROBE_TIMEOUT_S):
                pass
        except (OSError, urllib.error.URLError) as err:
            raise TrackerUnavailable(f"MLflow server {uri} unreachable ({err})") from None

    def start(self, info: RunInfo, resume_id: str | None) -> str:
        _require("mlflow", "mlflow")
        # A server that goes away mid-run costs a few seconds per call, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = self.where()
        self._probe(uri)
        self.client = MlflowClient(tracking_uri=uri)
        if resume_id is not None:
            self.client.get_run(resume_id)  # raises when it is gone: the caller starts a new run
            self.client.update_run(resume_id, status="RUNNING")
            self.run_id = resume_id
            return resume_id
        experiment_name = info.sweep or info.project
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        run = self.client.create_run(experiment_id, run_name=info.name, tags=info.tags())
        self.run_id = run.info.run_id
        params = [Param(key, value[:6000]) for key, value in info.params.items()]
        for first in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[first : first + 100])
        return self.run_id

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_final(self, scalars: dict[str, float], step: int, artifacts: list[Path]) -> None:
        self.log_scalars(scalars, step)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, ok: bool) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


class WandbTracker(Tracker):
    """A W&B run in `track.project`, grouped by sweep; online, or offline (`wandb sync` later). Its files go
    under `track.wandb_dir` (default: the run folder)."""

    name = "wandb"

    def __init__(self, cfg: TrackConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.wandb_dir) if cfg.wandb_dir else run_dir
        self.run: Any = None

    def where(self) -> str:
        return f"{self.cfg.wandb_entity or ''}/{self.cfg.project}"

    def start(self, info: RunInfo, resume_id: str | None) -> str:
        wandb = _require("wandb", "wandb")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=info.project,
            entity=self.cfg.wandb_entity,
            dir=str(self.dir),
            id=resume_id,  # None: W&B picks a new id
            resume="allow",
            name=info.name,
            group=info.sweep,
            tags=[f"{key}={value}"[:64] for key, value in info.grid.items()],
            config=info.params,  # on resume too (same values): a SIGKILLed attempt's offline file may lack it
            mode=self.cfg.wandb_mode,
            reinit="create_new",  # an inline sweep opens one run per cell in one process
            settings=wandb.Settings(console="off", init_timeout=60, quiet=True),
        )
        return str(self.run.id)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        self.run.log({**scalars, "epoch": step}, step=step)

    def log_final(self, scalars: dict[str, float], step: int, artifacts: list[Path]) -> None:
        import wandb

        self.run.summary.update(scalars)  # final numbers: the summary, not another history step
        if artifacts:
            artifact = wandb.Artifact(f"run-{self.run.id}", type="dmlbench-run")
            for path in artifacts:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def close(self, ok: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if ok else 1)


TRACKER_CLASSES: dict[str, Callable[[TrackConfig, Path], Tracker]] = {
    cls.name: cls for cls in (TensorBoardTracker, MlflowTracker, WandbTracker)
}
