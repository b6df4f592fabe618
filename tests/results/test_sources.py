"""Several results sources into one table and one figure (`collect A B --out`, `plot recall A B`), and names
such as `results/baseline` found from the dmlbench checkout whatever the working folder (collect, plot, compare)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.cli import main
from dmlbench.errors import UsageError
from dmlbench.results import sources
from dmlbench.results.collect import collect
from dmlbench.results.sources import SOURCE_KEY, collect_sources, resolve_source

REPO = Path(__file__).resolve().parents[2]


def my_sweep(root: Path, loss: str = "circle-like", r1: tuple[float, ...] = (0.30, 0.32, 0.31)) -> Path:
    """A sweep folder of finished runs of one loss (its name is only a label here), one per seed."""
    for seed, value in enumerate(r1):
        write_run(root / "runs", {"loss.name": "bdl", "loss.params.alpha": 3.0, "seed": seed},
                  {"emb": recall_metrics(value)}, sweep=loss)  # fmt: skip
    return root


def test_collect_two_sources_into_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = my_sweep(tmp_path / "sweeps" / "my_grid")
    other = tmp_path / "other"
    for seed, value in enumerate((0.20, 0.22)):
        write_run(other / "runs", {"loss.name": "bdl", "seed": seed}, {"emb": recall_metrics(value)}, sweep="other")
    main(["collect", str(other), "--out", str(tmp_path / "collected"), "--no-plots"])  # a collected folder
    capsys.readouterr()

    out = tmp_path / "both"
    assert main(["collect", str(mine), str(tmp_path / "collected"), "--out", str(out), "--no-plots"]) == 0
    table = capsys.readouterr().out
    frame = pd.read_csv(out / "results.csv")
    assert sorted(frame[SOURCE_KEY].unique()) == sorted([str(mine), str(tmp_path / "collected")])
    assert frame["run_id"].nunique() == 5
    # one table with one row per source (both are bdl: never averaged together)
    summary = pd.read_csv(out / "tables" / "summary_synthshop.csv")
    r1 = summary[summary["column"] == "recall@1"].set_index(SOURCE_KEY)
    assert r1["mean"].round(3).to_dict() == {str(mine): 0.31, str(tmp_path / "collected"): 0.21}
    assert r1["n"].to_dict() == {str(mine): 3, str(tmp_path / "collected"): 2}
    assert "source" in table and str(mine) in table and str(tmp_path / "collected") in table


def test_several_sources_need_out_and_duplicates_count_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = my_sweep(tmp_path / "mine")
    copy = tmp_path / "copy"
    shutil.copytree(mine, copy)
    assert main(["collect", str(mine), str(copy)]) == 2
    assert "--out" in capsys.readouterr().err
    merged = collect_sources([mine, copy])
    assert merged.frame["run_id"].nunique() == 3 and set(merged.frame[SOURCE_KEY]) == {str(mine)}
    assert [p.state for p in merged.problems] == ["duplicate"] * 3
    assert len(merged.finished) == 3


def test_plot_recall_of_two_sources_is_one_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = my_sweep(tmp_path / "a")
    b = my_sweep(tmp_path / "b", r1=(0.5, 0.52))
    assert main(["plot", "recall", str(a), str(b), "--out", str(tmp_path / "plots")]) == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["recall_synthshop_emb.png", "recall_synthshop_emb.pdf"]


def test_committed_results_are_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the user's own folder: no results/ here
    assert resolve_source("results/baseline") == REPO / "results" / "baseline"
    mine = my_sweep(tmp_path / "mine")
    # compare's baseline path from the user's folder: read (the gate then answers), not "results not found"
    code = main(["compare", str(mine), "results/baseline", "--by", "loss.name"])
    captured = capsys.readouterr()
    assert "results not found" not in captured.err and code in (0, 1, 2), captured
    assert main(["compare", "results/baseline", "results/baseline", "--layer", "fc"]) == 0  # A/A of the same runs
    capsys.readouterr()
    out = tmp_path / "mine_and_baseline"
    assert main(["collect", str(mine), "results/baseline", "--out", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"results/baseline: read from the dmlbench checkout: {REPO / 'results' / 'baseline'}" in err
    frame = pd.read_csv(out / "results.csv")
    assert set(frame[SOURCE_KEY]) == {str(mine), "results/baseline"}
    assert set(frame.loc[frame[SOURCE_KEY] == "results/baseline", "loss.name"]) == {
        "bdl", "sbdl", "multi-similarity", "batch-hard"}  # fmt: skip
    assert (out / "query_hits.npz").is_file()  # the baseline's per-query hits come along (for compare)


def test_a_name_found_nowhere_says_where_the_results_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "results/nope", "results/baseline"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results not found: results/nope" in err and "dmlbench repository" in err
    monkeypatch.setattr(sources, "repository_root", lambda: None)  # as installed from a wheel
    with pytest.raises(UsageError, match="installed without its repository"):
        resolve_source("results/baseline")


def test_one_source_is_collected_as_before(tmp_path: Path) -> None:
    mine = my_sweep(tmp_path / "mine")
    one = collect_sources([mine])
    assert SOURCE_KEY not in one.frame.columns
    pd.testing.assert_frame_equal(one.frame, collect(mine).frame)
