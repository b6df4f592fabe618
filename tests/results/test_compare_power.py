"""compare's estimators against hand-computed answers: paired t, Welch, the query-noise term, the MDE,
one reference per new cell (--reference or the best), --min-diff in points, a collected folder as baseline,
unmatched cells listed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.cli import main
from dmlbench.evaluate.hits import save_query_hits
from dmlbench.results import power
from dmlbench.results.collect import collect, save_frame, save_hits
from dmlbench.results.compare import compare_frames

NEW = [0.50, 0.55, 0.60, 0.58]
BASE = [0.48, 0.50, 0.57, 0.55]


def frame(values_by_loss: dict[str, list[float]], seeds: list[int] | None = None) -> pd.DataFrame:
    """A collected long frame (emb recall@1 only) with one run per (loss, seed)."""
    rows = []
    for loss, values in values_by_loss.items():
        for i, value in enumerate(values):
            seed = seeds[i] if seeds else i
            rows.append(
                {"run_id": f"{loss}-{seed}", "dataset": "synthshop", "seed": seed, "layer": "emb",
                 "metric": "recall", "k": 1, "value": value, "path": f"runs/{loss}-{seed}",
                 "loss.name": loss, "sampler.name": "batch-wise"}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out["k"] = out["k"].astype("Int64")
    return out


def test_paired_t_known_answer() -> None:
    # d_s = 0.02, 0.05, 0.03, 0.03: mean 0.0325, s_d = sqrt(0.000475 / 3) = 0.0125831, se = s_d / 2
    cells = compare_frames(frame({"x": NEW}), frame({"x": BASE})).cells
    row = cells.iloc[0]
    se = math.sqrt(0.000475 / 3) / 2
    assert row["method"] == "paired" and row["diff"] == pytest.approx(0.0325)
    assert row["se"] == pytest.approx(se) and row["df"] == 3
    half = 3.182446 * se  # t_0.975,3
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.0325 - half, 0.0325 + half), rel=1e-6)
    assert row["mde"] == pytest.approx((3.182446 + 0.978472) * se, rel=1e-6)  # t_0.975,3 + t_0.8,3
    ref = stats.ttest_rel(NEW, BASE).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert row["verdict"] == "better"


def test_welch_when_seeds_differ_known_answer() -> None:
    cells = compare_frames(frame({"x": NEW}, seeds=[10, 11, 12, 13]), frame({"x": BASE})).cells
    row = cells.iloc[0]
    a, b = np.array(NEW), np.array(BASE)
    v1, v2 = a.var(ddof=1) / 4, b.var(ddof=1) / 4
    df = (v1 + v2) ** 2 / (v1**2 / 3 + v2**2 / 3)
    assert row["method"] == "welch" and row["df"] == pytest.approx(df)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert row["mde"] == pytest.approx((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * math.sqrt(v1 + v2))
    # Unpaired, the same numbers are not significant: pairing removes the variance both sides share.
    assert row["verdict"] == "same"


def test_query_noise_is_added_from_hit_vectors() -> None:
    positions = np.arange(4)
    new_hits = {f"x-{s}": {"positions": positions, "emb": np.array([1, 1, 0, 0], np.uint8)} for s in range(4)}
    base_hits = {f"x-{s}": {"positions": positions, "emb": np.array([1, 0, 0, 1], np.uint8)} for s in range(4)}
    plain = compare_frames(frame({"x": NEW}), frame({"x": BASE})).cells.iloc[0]
    cells = compare_frames(frame({"x": NEW}), frame({"x": BASE}), hits_new=new_hits, hits_base=base_hits).cells
    row = cells.iloc[0]
    # d_q = 0, 1, 0, -1: var 2/3, v_query = (2/3) / 4 = 1/6; se^2 = v_seed + v_query
    v_seed, v_query = plain["se"] ** 2, 1 / 6
    assert row["method"] == "paired+queries"
    assert row["se"] == pytest.approx(math.sqrt(v_seed + v_query))
    assert row["df"] == pytest.approx((v_seed + v_query) ** 2 / (v_seed**2 / 3 + v_query**2 / 3))
    # Queries that differ in count or order are never paired: seeds only.
    other = {k: {"positions": positions[::-1], "emb": v["emb"]} for k, v in base_hits.items()}
    assert compare_frames(frame({"x": NEW}), frame({"x": BASE}), hits_new=new_hits, hits_base=other).cells.iloc[0]["method"] == "paired"


def test_query_noise_is_clustered_by_the_queries_class() -> None:
    """Hits that carry classes: the query draw is a draw of classes (queries of one item move together)."""
    positions, classes = np.arange(4), np.array([7, 7, 9, 9])
    new_hits = {f"x-{s}": {"positions": positions, "classes": classes, "emb": np.array([1, 1, 0, 0], np.uint8)}
                for s in range(4)}  # fmt: skip
    base_hits = {f"x-{s}": {"positions": positions, "classes": classes, "emb": np.array([0, 0, 1, 1], np.uint8)}
                 for s in range(4)}  # fmt: skip
    plain = compare_frames(frame({"x": NEW}), frame({"x": BASE})).cells.iloc[0]
    row = compare_frames(frame({"x": NEW}), frame({"x": BASE}), hits_new=new_hits, hits_base=base_hits).cells.iloc[0]
    # d_q = 1, 1, -1, -1 (mean 0); class sums 2 and -2: v_query = 2/1 * (4 + 4) / 16 = 1 on 1 df.
    # Treated as 4 iid queries it would be var(d_q)/4 = (4/3)/4 = 1/3 on 3 df.
    v_seed, v_query = plain["se"] ** 2, 1.0
    assert row["method"] == "paired+queries"
    assert row["se"] == pytest.approx(math.sqrt(v_seed + v_query))
    assert row["df"] == pytest.approx((v_seed + v_query) ** 2 / (v_seed**2 / 3 + v_query**2 / 1))
    # One class on both sides leaves no class-level spread to estimate: seeds only, never the iid formula.
    one_class = {k: {**v, "classes": np.zeros(4, np.int64)} for k, v in new_hits.items()}
    lone = compare_frames(frame({"x": NEW}), frame({"x": BASE}), hits_new=one_class, hits_base=one_class).cells.iloc[0]
    assert lone["method"] == "paired" and lone["se"] == pytest.approx(plain["se"])


def test_one_reference_no_bonferroni() -> None:
    base = frame({"bdl": BASE, "sbdl": [0.60, 0.62, 0.61, 0.66]})
    result = compare_frames(frame({"mine": NEW}), base, by=["loss.name"])
    row = result.cells.set_index("base:loss.name").loc["sbdl"]  # the best baseline: the gate
    assert row["role"] == "gate"
    half = stats.t.ppf(0.975, 3) * row["se"]  # one test at 5%: the others are exploratory, not a family
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["diff"] - half, row["diff"] + half))
    assert row["mde"] == pytest.approx(power.mde(row["se"], 3))
    single = compare_frames(frame({"mine": NEW}), base, by=["loss.name"], reference="bdl").cells
    assert single.set_index("base:loss.name")["role"].to_dict() == {"bdl": "gate", "sbdl": "exploratory"}


def write_sweep(root: Path, values: dict[str, list[float]], hits: dict[str, list[list[int]]] | None = None) -> Path:
    for loss, r1s in values.items():
        for seed, r1 in enumerate(r1s):
            run = write_run(root / "runs", {"loss.name": loss, "seed": seed}, {"emb": recall_metrics(r1)})
            if hits is not None:
                save_query_hits(run, {"positions": np.arange(len(hits[loss][seed])), "emb": np.array(hits[loss][seed], np.uint8)})
    return root


def test_cli_collected_baseline_folder_min_diff_points_and_unmatched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hits = [[1, 0, 1, 1, 0, 1, 0, 1]] * 4
    base = write_sweep(tmp_path / "base", {"bdl": BASE, "sbdl": NEW}, {"bdl": hits, "sbdl": hits})
    committed = tmp_path / "committed"
    frame_ = collect(base).frame
    save_frame(frame_, committed)
    assert save_hits(frame_, base, committed) is not None
    new = write_sweep(tmp_path / "new", {"mine": [v - 0.10 for v in BASE]}, {"mine": hits})
    assert main(["compare", str(new), str(committed), "--by", "loss.name"]) == 1
    out = capsys.readouterr().out
    assert "baseline loss" in out and "MDE" in out and "paired+queries" in out and "exploratory" in out
    # 10 points worse than bdl: a tolerance of 12 points (table units) makes it irrelevant, 2 does not.
    assert main(["compare", str(new), str(committed), "--by", "loss.name", "--reference", "bdl", "--min-diff", "12"]) == 0
    assert main(["compare", str(new), str(committed), "--by", "loss.name", "--reference", "bdl", "--min-diff", "2"]) == 1
    # A new cell on another sampler meets nothing: listed, not dropped.
    write_run(new / "runs", {"loss.name": "mine", "sampler.name": "image-wise", "seed": 0}, {"emb": recall_metrics(0.5)})
    main(["compare", str(new), str(committed), "--by", "loss.name", "--reference", "bdl"])
    out = capsys.readouterr().out
    assert "matched no baseline cell" in out and "image-wise" in out
    assert main(["compare", str(new), str(committed), "--by", "loss.name", "--reference", "nope"]) == 2


def test_packed_hits_store_each_query_set_once_and_read_back(tmp_path: Path) -> None:
    from dmlbench.results.collect import load_hits

    base = tmp_path / "base"
    for seed in range(3):
        run = write_run(base / "runs", {"loss.name": "bdl", "seed": seed}, {"emb": recall_metrics(0.5)})
        save_query_hits(run, {"positions": np.array([4, 9, 12]), "classes": np.array([1, 1, 2]),
                              "emb": np.array([seed % 2, 1, 0], np.uint8)})  # fmt: skip
    odd = write_run(base / "runs", {"loss.name": "sbdl", "seed": 0}, {"emb": recall_metrics(0.5)})
    save_query_hits(odd, {"positions": np.array([4, 9]), "classes": np.array([1, 1]), "emb": np.array([1, 1], np.uint8)})
    frame_ = collect(base).frame
    out = tmp_path / "collected"
    save_frame(frame_, out)
    path = save_hits(frame_, base, out)
    assert path is not None
    with np.load(path) as data:
        assert sorted(k for k in data.files if k.startswith("queries")) == [
            "queries0.classes", "queries0.positions", "queries1.classes", "queries1.positions"
        ]  # fmt: skip
    from_runs, from_pack = load_hits(base, frame_), load_hits(out, frame_)
    assert from_runs.keys() == from_pack.keys() and len(from_pack) == 4
    for run, entry in from_runs.items():
        assert entry.keys() == from_pack[run].keys()
        for key in entry:
            assert np.array_equal(entry[key], from_pack[run][key]), (run, key)
