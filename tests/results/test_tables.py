"""Tables: mean ± 95% t-interval over seeds (checked against scipy), best per column, specs as data, paper CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.results.collect import collect
from dmlbench.results.table_render import to_csv_frame, to_latex, to_markdown
from dmlbench.results.tables import (
    TableSpec,
    TableSpecError,
    build_table,
    build_tables,
    load_paper,
    load_specs,
    summarize,
    t_halfwidth,
)

R1 = {"bdl": [0.50, 0.52, 0.57], "sbdl": [0.61, 0.60, 0.65, 0.66], "ms": [0.40]}


def scipy_halfwidth(values: list[float]) -> float:
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return (high - low) / 2


@pytest.fixture()
def frame(tmp_path: Path) -> pd.DataFrame:
    runs = tmp_path / "runs"
    for loss, values in R1.items():
        for seed, r1 in enumerate(values):
            write_run(
                runs,
                {"loss.name": loss, "seed": seed},
                {
                    "emb": recall_metrics(r1, r1 + 0.1),
                    "fc": recall_metrics(r1 - 0.05),
                    "conv": recall_metrics(r1 - 0.1),
                },
                dataset="inshop",
            )
    # Same loss as a finished group: must not change its n or mean.
    write_run(runs, {"loss.name": "bdl", "seed": 5}, state="failed", dataset="inshop")
    write_run(runs, {"loss.name": "sbdl", "seed": 6}, state="started", dataset="inshop")
    return collect(tmp_path).frame


def test_ci_matches_scipy_t_interval() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        values = rng.normal(0.5, 0.05, size=n).tolist()
        assert t_halfwidth(float(np.std(values, ddof=1)), n) == pytest.approx(
            scipy_halfwidth(values), rel=1e-12
        )
        out = summarize(pd.DataFrame({"g": ["x"] * n, "value": values}), ["g"])
        assert out["ci"][0] == pytest.approx(scipy_halfwidth(values), rel=1e-12)
        assert out["mean"][0] == pytest.approx(np.mean(values))


def test_methods_table_numbers(frame: pd.DataFrame) -> None:
    spec = next(s for s in load_specs() if s.name == "methods")
    table = build_table(frame, spec, "inshop")
    assert table is not None and table.row_keys == ["loss.name"] and table.column_values == [1, 10]
    cells = table.cells.set_index(["loss.name", "column"])
    for loss, values in R1.items():
        cell = cells.loc[(loss, 1)]
        assert cell["mean"] == pytest.approx(np.mean(values))
        assert cell["n"] == len(values)  # the failed and the unfinished run are not counted
        if len(values) > 1:
            assert cell["ci"] == pytest.approx(scipy_halfwidth(values))
        else:
            assert np.isnan(cell["ci"])
    # Best per column: sbdl has the highest mean at both K.
    assert cells.loc[("sbdl", 1), "best"] and cells.loc[("sbdl", 10), "best"]
    assert not cells.loc[("bdl", 1), "best"]

    md = to_markdown(table)
    sbdl_ci = scipy_halfwidth(R1["sbdl"]) * 100
    assert f"**{np.mean(R1['sbdl']) * 100:.1f} ± {sbdl_ci:.1f}**" in md
    ms_row = next(line for line in md.splitlines() if line.startswith("| ms"))
    assert "40.0" in ms_row and "±" not in ms_row and ms_row.rstrip(" |").endswith("1")  # n = 1: no interval
    assert "95% t-interval" in md and "Recall@K = fraction of queries" in md

    tex = to_latex(table)
    assert r"\textbf{" in tex and r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex
    csv = to_csv_frame(table)
    row = csv[(csv["loss.name"] == "bdl") & (csv["column"] == 1)].iloc[0]
    assert row["mean"] == pytest.approx(np.mean(R1["bdl"])) and row["n"] == 3
    assert row["ci95"] == pytest.approx(scipy_halfwidth(R1["bdl"]))


def test_varying_keys_split_rows_never_averaged(tmp_path: Path) -> None:
    for alpha, base in ((2.0, 0.5), (3.0, 0.7)):
        for seed in range(2):
            write_run(
                tmp_path / "runs",
                {"loss.name": "bdl", "loss.params.alpha": alpha, "loss.params.beta": 0.5, "seed": seed},
                {"emb": recall_metrics(base + 0.01 * seed)},
            )
        write_run(
            tmp_path / "runs",
            {"loss.name": "sbdl", "loss.params.alpha": alpha, "seed": 0},
            {"emb": recall_metrics(0.9)},
        )
    frame = collect(tmp_path).frame
    spec = next(s for s in load_specs() if s.name == "methods")
    table = build_table(frame, spec, "synthshop")
    assert table is not None and table.row_keys == ["loss.name", "loss.params.alpha", "loss.params.beta"]
    cells = table.cells[table.cells["column"] == 1]
    bdl3 = cells[(cells["loss.name"] == "bdl") & (cells["loss.params.alpha"] == 3.0)].iloc[0]
    assert bdl3["mean"] == pytest.approx(0.705) and bdl3["n"] == 2


def test_alpha_beta_spec_as_data(tmp_path: Path) -> None:
    values = {}
    for alpha in (2.0, 3.0):
        for beta in (0.1, 0.5):
            for seed in range(2):
                r1 = 0.5 + alpha / 10 - beta / 10 + seed / 100
                values.setdefault((alpha, beta), []).append(r1)
                grid = {
                    "loss.name": "sbdl",
                    "loss.params.alpha": alpha,
                    "loss.params.beta": beta,
                    "seed": seed,
                }
                write_run(tmp_path / "runs", grid, {"emb": recall_metrics(r1)})
    frame = collect(tmp_path).frame
    table = build_table(frame, next(s for s in load_specs() if s.name == "alpha_beta"), "synthshop")
    assert table is not None and table.column_values == [0.1, 0.5]
    cell = table.cells[(table.cells["loss.params.alpha"] == 3.0) & (table.cells["column"] == 0.1)].iloc[0]
    assert cell["mean"] == pytest.approx(np.mean(values[(3.0, 0.1)])) and bool(cell["best"])
    assert "beta=0.1" in to_markdown(table)

    # A user-made table from a dict: metrics as columns, fc layer.
    spec = TableSpec.from_dict(
        "mine", {"rows": ["loss.params.beta"], "columns": "metric", "metrics": ["map@r", "recall@1"]}
    )
    mine = build_table(frame, spec, "synthshop")
    assert mine is not None and mine.column_values == ["map@r", "recall@1"]
    assert "loss.params.alpha" in mine.row_keys  # alpha varies: it joins the rows


def test_spec_typo_is_an_error_naming_the_field() -> None:
    with pytest.raises(TableSpecError, match="did you mean 'metric'"):
        TableSpec.from_dict("bad", {"metrc": "recall"})


def test_tables_skip_what_the_results_cannot_show(frame: pd.DataFrame) -> None:
    names = {t.spec.name for t in build_tables(frame)}
    # One sampler only, no alpha/beta grid, no bce-attr ablation, no SOP: those tables are skipped.
    assert names == {"methods", "layers", "summary"}
    layers = next(t for t in build_tables(frame) if t.spec.name == "layers")
    assert layers.row_keys == ["loss.name", "layer"]
    body = [line for line in to_markdown(layers).splitlines() if line.startswith("| bdl")]
    assert [line.split("|")[2].strip() for line in body] == ["emb", "fc", "conv"]  # row_order from the spec


def test_paper_numbers_transcribed() -> None:
    paper = load_paper()
    sgml = paper[paper["source"] == "sgml"]
    assert set(sgml["table"]) == {"I", "II", "III", "IV", "V", "VI", "VII", "VIII"}
    np.testing.assert_allclose(sgml["value"], sgml["published"].astype(float) / 100)
    inshop_ks, cub_ks = {1, 10, 20, 30, 40, 50}, {1, 2, 4, 8, 16, 32}
    assert (
        set(sgml[sgml["dataset"] == "inshop"]["k"]) == inshop_ks
        and set(sgml[sgml["dataset"] == "cub"]["k"]) == cub_ks
    )

    def value(table: str, method: str, k: int, layer: str = "") -> float:
        sel = sgml[(sgml["table"] == table) & (sgml["method"] == method) & (sgml["k"] == k)]
        sel = sel[sel["layer"] == layer] if layer else sel
        assert len(sel) == 1
        return float(sel["value"].iloc[0])

    assert value("I", "Proposed SGML", 1) == pytest.approx(0.918)
    assert value("II", "Proposed SGML", 50, "fc") == pytest.approx(0.976)
    assert value("IV", "Attribute Learning", 1) == pytest.approx(0.616)
    assert value("V", "Proposed SGML", 32) == pytest.approx(0.981)
    assert value("VIII", "Multitask Learning", 1) == pytest.approx(0.677)
    assert len(sgml[(sgml["table"] == "I") & (sgml["method"] == "DREML")]) == 4  # "-" cells are not numbers
    sop = paper[paper["source"] == "sop_triplet_report"]
    assert sop[["metric", "k", "value"]].values.tolist() == [["precision", 10, 0.2622]]


def test_paper_rows_beside_ours(frame: pd.DataFrame) -> None:
    spec = next(s for s in load_specs() if s.name == "methods")
    table = build_table(frame, spec, "inshop", load_paper())
    assert table is not None and table.paper_rows is not None
    md = to_markdown(table)
    sgml_row = next(line for line in md.splitlines() if "paper (sgml I): Proposed SGML" in line)
    assert "91.8" in sgml_row and "97.7" in sgml_row
    # Published rows never take the "best" mark from ours.
    assert "**91.8" not in md
