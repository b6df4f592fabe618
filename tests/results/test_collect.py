"""collect: run folders -> long frame; unfinished, failed and broken runs listed, never mixed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench import rundir
from dmlbench.cli import main
from dmlbench.results.collect import (
    collect,
    collect_history,
    find_run_dirs,
    load_frame,
    save_frame,
    split_metric,
)
from dmlbench.results.report import write_report

R1 = {"bdl": [0.50, 0.52, 0.57], "sbdl": [0.61, 0.60, 0.65]}


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """2 losses x 3 seeds finished, plus a failed and an unfinished run (each with a metrics.json) and a
    broken (DONE, no metrics) run."""
    runs = tmp_path / "sweep" / "runs"
    for loss, values in R1.items():
        for seed, r1 in enumerate(values):
            history = [
                {"epoch": e, "loss": 1.0 / e, "lr": 1e-4, "time_s": 0.5, "val": {"recall@1": r1 - 0.1 / e}}
                for e in (1, 2)
            ]
            write_run(
                runs,
                {"loss.name": loss, "loss.params.alpha": 2.0, "seed": seed},
                {"emb": recall_metrics(r1), "fc": recall_metrics(r1 - 0.1)},
                history=history,
            )
    # Both hold a complete metrics.json: the failed run stopped after writing it (in a tracker's finish,
    # before DONE), the unfinished one was killed between it and DONE. Only DONE makes a run a result.
    for seed, state in ((7, "failed"), (8, "started")):
        stopped = write_run(runs, {"loss.name": "sbdl", "loss.params.alpha": 2.0, "seed": seed}, state=state)
        layers = {"emb": {**recall_metrics(0.99), "num_queries": 100, "excluded_queries": 0}}
        rundir.atomic_write_json(stopped / rundir.METRICS, {"run_id": stopped.name, "dataset": "synthshop", "layers": layers})
    broken = write_run(
        runs, {"loss.name": "bdl", "loss.params.alpha": 2.0, "seed": 9}, {"emb": recall_metrics(0.9)}
    )
    (broken / rundir.METRICS).unlink()
    return tmp_path / "sweep"


def test_split_metric_names() -> None:
    assert split_metric("recall@32") == ("recall", 32)
    assert split_metric("attr_sim@5") == ("attr_sim", 5)
    assert split_metric("map@r") == ("map_r", None)
    assert split_metric("r_precision") == ("r_precision", None)


def test_long_frame_has_one_row_per_run_layer_metric_k(tree: Path) -> None:
    collection = collect(tree)
    frame = collection.frame
    assert len(collection.finished) == 6
    # 6 runs x 2 layers x 6 metric entries (recall@1, recall@10, precision@1, precision@10, r_precision, map@r)
    assert len(frame) == 6 * 2 * 6
    assert {
        "run_id",
        "seed",
        "layer",
        "metric",
        "k",
        "value",
        "dataset",
        "name",
        "loss.name",
        "loss.params.alpha",
    } <= set(frame.columns)
    assert frame.groupby(["run_id", "layer", "metric", "k"], dropna=False).size().max() == 1
    emb_r1 = frame[(frame.layer == "emb") & (frame.metric == "recall") & (frame.k == 1)]
    for loss, values in R1.items():
        got = emb_r1[emb_r1["loss.name"] == loss].sort_values("seed")["value"].tolist()
        assert got == pytest.approx(values)
    assert frame[frame.metric == "map_r"]["k"].isna().all()
    assert set(frame["loss.params.alpha"]) == {2.0}
    assert (frame["num_queries"] == 100).all()


def test_unfinished_failed_and_broken_runs_are_listed_not_collected(tree: Path) -> None:
    collection = collect(tree)
    states = sorted(p.state for p in collection.problems)
    assert states == ["broken", "failed", "started"]
    failed = next(p for p in collection.problems if p.state == "failed")
    assert failed.reason == "DatasetError: root not found"  # the exception line of the traceback
    problem_ids = {Path(p.path).name for p in collection.problems}
    assert problem_ids.isdisjoint(set(collection.frame["run_id"]))
    assert set(collection.frame["seed"]) == {0, 1, 2}  # seeds 7, 8, 9 belong to the excluded runs


def test_run_folders_found_anywhere_but_not_inside_runs(tmp_path: Path) -> None:
    a = write_run(
        tmp_path / "x" / "deep" / "er", {"loss.name": "bdl", "seed": 0}, {"emb": recall_metrics(0.5)}
    )
    b = write_run(
        tmp_path / "y", {"loss.name": "bdl", "seed": 1}, {"emb": recall_metrics(0.5)}, with_cell=False
    )
    (a / "nested").mkdir()
    (a / "nested" / rundir.CONFIG).write_text("seed: 5\n")  # inside a run: not a run of its own
    assert find_run_dirs(tmp_path) == sorted([a, b])
    frame = collect(tmp_path).frame
    # Without cell.json the standard columns still come from config.yaml.
    no_cell = frame[frame.run_id == b.name]
    assert set(no_cell["loss.name"]) == {"bdl"} and set(no_cell["sampler.name"]) == {"batch-wise"}
    assert no_cell["sweep"].isna().all()


def test_csv_and_parquet_round_trip(tree: Path, tmp_path: Path) -> None:
    frame = collect(tree).frame
    written = save_frame(frame, tmp_path / "out")
    assert [p.suffix for p in written] == [".csv", ".parquet"]
    for path in written:
        back = load_frame(path).sort_values(["run_id", "layer", "metric", "k"]).reset_index(drop=True)
        ref = frame.sort_values(["run_id", "layer", "metric", "k"]).reset_index(drop=True)
        np.testing.assert_allclose(back["value"], ref["value"])
        assert back["k"].tolist() == ref["k"].tolist()
        assert back["loss.name"].tolist() == ref["loss.name"].tolist()


def test_history_rows(tree: Path) -> None:
    history = collect_history(collect(tree).finished)
    assert len(history) == 12  # 6 runs x 2 epochs
    assert {"epoch", "loss", "lr", "val:recall@1", "loss.name", "loss.params.alpha"} <= set(history.columns)
    first = history[(history["loss.name"] == "bdl") & (history["seed"] == 0)].sort_values("epoch")
    assert first["val:recall@1"].tolist() == pytest.approx([0.40, 0.45])


def test_write_report_writes_tables_and_listing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_report(tree, out, plots=False).files
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"results.csv", "results.parquet", "not_collected.csv", "report.md"} <= names
    assert {
        "tables/methods_synthshop.md",
        "tables/methods_synthshop.tex",
        "tables/methods_synthshop.csv",
    } <= names
    assert not any(n.startswith("plots/") for n in names)
    listing = pd.read_csv(out / "not_collected.csv")
    assert sorted(listing["state"]) == ["broken", "failed", "started"]
    report = (out / "report.md").read_text()
    assert "6 finished run(s) collected; 3 run folder(s) not collected" in report
    assert "| sbdl" in report


@pytest.mark.slow
def test_write_report_draws_every_plot(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    embeddings = {
        "emb": np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32),
        "labels": np.repeat(np.arange(8), 5),
        "attributes": (np.arange(40 * 3).reshape(40, 3) % 2).astype(np.float32),
        "attribute_names": np.array(["floral", "red", "long"]),
    }
    np.savez(collect(tree).finished[0] / "embeddings_sample.npz", **embeddings)
    written = write_report(tree, out, embedding_methods=("pca",)).files
    names = {p.relative_to(out).as_posix() for p in written}
    assert {
        "plots/recall_synthshop_emb.png",
        "plots/recall_synthshop_emb.pdf",
        "plots/training_curves.png",
    } <= names
    assert any(n.startswith("plots/embedding_synthshop_") and n.endswith(".pdf") for n in names)
    assert all((out / n).stat().st_size > 1000 for n in names if n.startswith("plots/"))
    assert "![recall_synthshop_emb](plots/recall_synthshop_emb.png)" in (out / "report.md").read_text()


def test_collect_command_prints_tables_and_lists_problems(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["collect", str(tree), "--no-plots", "--paper"]) == 0
    out, err = capsys.readouterr()
    assert "**methods_synthshop**" in out and "| sbdl" in out
    assert "failed   runs/" in err and "DatasetError: root not found" in err
    assert (tree / "report" / "results.csv").is_file()
