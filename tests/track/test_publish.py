"""`dmlbench collect SWEEP_DIR --to mlflow=URI` publishes finished runs with the real MLflow package (a SQLite
store), once: publishing again skips the runs already there; a bad target is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import run_cli
from support.synthetic_runs import recall_metrics, write_run

pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow  # two CLI runs importing MLflow


def test_collect_publishes_finished_runs_once(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    runs = tmp_path / "sweep"
    history = [{"epoch": 1, "loss": 0.9, "lr": 0.1, "stats": {"pos_sim": 0.5}}, {"epoch": 2, "loss": 0.7, "lr": 0.1}]
    for loss, r1 in (("bdl", 0.5), ("ms", 0.25)):
        write_run(runs, {"loss.name": loss, "seed": 0}, {"emb": recall_metrics(r1), "fc": recall_metrics(r1 / 2)},
                  history=history, sweep="pub-sweep")
    write_run(runs, {"loss.name": "sbdl", "seed": 0}, state="failed", sweep="pub-sweep")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    first = run_cli("collect", str(runs), "--no-plots", "--to", f"mlflow={uri}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "published 2 run(s)" in first.stderr
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("pub-sweep")
    found = client.search_runs([experiment.experiment_id], filter_string="tags.`dmlbench.run_id` != ''")
    by_loss = {run.data.params["loss.name"]: run for run in found if "loss.name" in run.data.params}
    assert set(by_loss) == {"bdl", "ms"}
    bdl = by_loss["bdl"]
    assert bdl.info.status == "FINISHED" and bdl.data.tags["grid.loss.name"] == "bdl"
    assert bdl.data.metrics["test/emb/recall_at_1"] == pytest.approx(0.5)
    assert bdl.data.metrics["test/fc/recall_at_1"] == pytest.approx(0.25)
    steps = [(m.step, m.value) for m in client.get_metric_history(bdl.info.run_id, "train/loss")]
    assert sorted(steps) == [(1, 0.9), (2, 0.7)]
    report = [run for run in found if run.data.tags.get("dmlbench.run_id") == "pub-sweep-report"]
    assert len(report) == 1 and {a.path for a in client.list_artifacts(report[0].info.run_id)}

    again = run_cli("collect", str(runs), "--no-plots", "--to", f"mlflow={uri}", cwd=tmp_path)
    assert again.returncode == 0 and "published 0 run(s)" in again.stderr and "2 already there" in again.stderr

    bad = run_cli("collect", str(runs), "--to", "wandb", cwd=tmp_path)
    assert bad.returncode == 2 and "--to takes mlflow=" in bad.stderr and "Traceback" not in bad.stderr


def test_runs_named_by_their_cell_and_one_report_run_updated_in_place(tmp_path: Path) -> None:
    """With MLflow's local file store (a folder): each cell's run is named by its loss, sampler and seed, and
    re-publishing updates the one report run (the same MLflow run, its report.md replaced) instead of adding one."""
    from mlflow.tracking import MlflowClient

    from dmlbench.cli import main

    runs = tmp_path / "my_grid"
    for loss, seed in (("bdl", 0), ("ms", 0)):
        write_run(runs, {"loss.name": loss, "seed": seed}, {"emb": recall_metrics(0.5)}, sweep="my_grid")
    store = tmp_path / "mlruns"
    assert main(["collect", str(runs), "--no-plots", "--to", f"mlflow={store}"]) == 0
    client = MlflowClient(tracking_uri=str(store))
    experiment = client.get_experiment_by_name("my_grid")

    def published() -> tuple[list[str], list[str]]:
        found = client.search_runs([experiment.experiment_id])
        names = sorted(r.info.run_name for r in found if r.data.tags.get("dmlbench.run_id") != "my_grid-report")
        reports = [r.info.run_id for r in found if r.data.tags.get("dmlbench.run_id") == "my_grid-report"]
        return names, reports

    names, reports = published()
    assert names == ["bdl batch-wise seed=0", "ms batch-wise seed=0"]
    assert len(reports) == 1

    write_run(runs, {"loss.name": "bdl", "seed": 1}, {"emb": recall_metrics(0.6)}, sweep="my_grid")
    assert main(["collect", str(runs), "--no-plots", "--to", f"mlflow={store}"]) == 0
    names, again = published()
    assert names == ["bdl batch-wise seed=0", "bdl batch-wise seed=1", "ms batch-wise seed=0"]
    assert again == reports  # the same report run, not a second one
    report_md = Path(client.download_artifacts(reports[0], "report.md", str(tmp_path / "dl")))
    assert "3 finished run(s) collected" in report_md.read_text()
    assert client.get_run(reports[0]).info.status == "FINISHED"
