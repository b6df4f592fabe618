"""`dmlbench collect SWEEP_DIR --to mlflow=URI`: publish finished runs (and the sweep's report) to MLflow
afterwards, e.g. runs trained without a tracker or on a cluster that could not reach the server.

Run folders are only read (a finished folder is never written to). Publishing is idempotent per run: a run
whose run_id tag is already in the experiment is skipped; a sweep cell's run is named by its cell (loss,
sampler, seed, other grid values). The report is one run per experiment, updated in place by a re-publish.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dmlbench import rundir
from dmlbench.config import config_from_dict, load_yaml
from dmlbench.errors import UsageError
from dmlbench.track import final_scalars, run_info
from dmlbench.track.backends import MlflowTracker
from dmlbench.track.base import RunInfo, epoch_scalars

TARGETS = ("mlflow",)


def parse_target(text: str) -> tuple[str, str]:
    """`mlflow=URI` -> ("mlflow", URI).

    >>> parse_target("mlflow=sqlite:///m.db")
    ('mlflow', 'sqlite:///m.db')
    """
    kind, sep, uri = text.partition("=")
    if kind not in TARGETS or not sep or not uri:
        raise UsageError(f"--to takes mlflow=TRACKING_URI (a folder, sqlite:///file.db or http://server), not '{text}'")
    return kind, uri


def _tracker(uri: str, run_dir: Path) -> MlflowTracker:
    from dmlbench.config import TrackConfig

    return MlflowTracker(TrackConfig(mlflow_uri=uri), run_dir)


def _published_run(uri: str, info: RunInfo) -> str | None:
    """The MLflow run id of the run tagged with `info.run_id` in its experiment, if published already."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(info.sweep or info.project)
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`dmlbench.run_id` = '{info.run_id}'")
    return str(found[0].info.run_id) if found else None


def _already_published(uri: str, info: RunInfo) -> bool:
    return _published_run(uri, info) is not None


def publish_runs(run_dirs: list[Path], sweep_name: str, uri: str, report_files: list[Path]) -> tuple[int, int]:
    """Log each finished run not yet in the experiment, then the report files as one 'report' run.
    Returns (published, skipped)."""
    published = skipped = 0
    experiments: set[str] = set()
    for run_dir in run_dirs:
        cfg = config_from_dict(load_yaml((run_dir / rundir.CONFIG).read_text()))
        info = run_info(cfg, run_dir)
        info = dataclasses.replace(info, sweep=info.sweep or sweep_name)
        experiments.add(str(info.sweep))
        tracker = _tracker(uri, run_dir)
        tracker.where()  # raises TrackerUnavailable when mlflow is not installed
        if _already_published(uri, info):
            skipped += 1
            continue
        tracker.start(info, None)
        for row in rundir.read_history(run_dir):
            tracker.log_scalars(epoch_scalars(row), int(row["epoch"]))
        metrics = rundir.read_json(run_dir / rundir.METRICS)
        files = [run_dir / n for n in (rundir.CONFIG, rundir.HISTORY, rundir.METRICS) if (run_dir / n).is_file()]
        tracker.log_final(final_scalars(metrics), int(metrics.get("epoch") or 0), files)
        tracker.close(ok=True)
        published += 1
    if report_files:
        # Beside the runs when they share one experiment (one sweep), else in one named after the folder.
        name = experiments.pop() if len(experiments) == 1 else sweep_name
        report = RunInfo(run_id=f"{name}-report", name=f"{name} report", project=name, sweep=name)
        tracker = _tracker(uri, Path("."))
        # one report run per experiment: a re-publish updates it in place (files of the same name replaced)
        tracker.start(report, _published_run(uri, report))
        tracker.log_final({}, 0, report_files)
        tracker.close(ok=True)
    return published, skipped
