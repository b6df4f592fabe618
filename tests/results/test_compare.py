"""compare: Welch interval of the difference (checked against scipy), verdicts, matching, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.cli import main
from dmlbench.results.collect import collect, load_frame, save_frame
from dmlbench.results.compare import compare_frames, welch_interval


def make_sweep(
    root: Path, r1_by_loss: dict[str, list[float]], extra: dict[str, object] | None = None
) -> Path:
    for loss, values in r1_by_loss.items():
        for seed, r1 in enumerate(values):
            grid = {"loss.name": loss, "sampler.name": "batch-wise", "seed": seed, **(extra or {})}
            write_run(root / "runs", grid, {"emb": recall_metrics(r1), "fc": recall_metrics(r1 - 0.1)})
    return root


def run_cli(*argv: str) -> int:
    return main(["compare", *map(str, argv)])


BASE = [0.50, 0.52, 0.51, 0.53]


def test_welch_interval_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for n1, n2 in ((3, 3), (2, 5), (6, 4)):
        a, b = rng.normal(0.6, 0.02, n1), rng.normal(0.55, 0.05, n2)
        ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        got = welch_interval(a.mean(), a.std(ddof=1), n1, b.mean(), b.std(ddof=1), n2)
        assert got == pytest.approx((ref.low, ref.high), rel=1e-10)


def test_single_run_against_seeds_uses_the_other_sides_variance() -> None:
    b = np.array(BASE)
    low, high = welch_interval(0.60, 0.0, 1, b.mean(), b.std(ddof=1), len(b))
    half = stats.t.ppf(0.975, len(b) - 1) * b.std(ddof=1) * np.sqrt(1 + 1 / len(b))
    assert (low, high) == pytest.approx((0.60 - b.mean() - half, 0.60 - b.mean() + half))
    assert np.isnan(welch_interval(0.6, 0.0, 1, 0.5, 0.0, 1)[0])


def test_same_results_are_same_and_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = make_sweep(tmp_path / "new", {"bdl": [0.51, 0.50, 0.53, 0.52]})
    base = make_sweep(tmp_path / "base", {"bdl": BASE})
    result = compare_frames(collect(new).frame, collect(base).frame)
    assert result.cells["verdict"].tolist() == ["same"]
    assert result.match_keys[:1] == ["dataset"] and "loss.name" in result.match_keys
    assert run_cli(new, base) == 0
    assert "same" in capsys.readouterr().out


def test_regression_exits_1_and_improvement_exits_0(tmp_path: Path) -> None:
    base = make_sweep(tmp_path / "base", {"bdl": BASE})
    worse = make_sweep(tmp_path / "worse", {"bdl": [0.40, 0.42, 0.41]})
    better = make_sweep(tmp_path / "better", {"bdl": [0.60, 0.62, 0.61]})
    assert run_cli(worse, base) == 1
    assert run_cli(better, base) == 0
    cells = compare_frames(collect(better).frame, collect(base).frame).cells
    assert cells["verdict"].tolist() == ["better"]
    a, b = np.array([0.60, 0.62, 0.61]), np.array(BASE)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (cells["ci_low"].iloc[0], cells["ci_high"].iloc[0]) == pytest.approx((ref.low, ref.high))
    # Another layer or metric is a separate question: fc of `worse` vs fc of `base` is also worse.
    assert run_cli(worse, base, "--layer", "fc", "--metric", "map@r") == 1
    # A tolerance that makes the drop irrelevant turns the verdict into "same".
    assert run_cli(worse, base, "--min-diff", "20") == 0  # points (x100), as the tables show them
    assert run_cli(worse, base, "--min-diff", "2") == 1


def test_new_loss_against_baseline_losses_by_key(tmp_path: Path) -> None:
    base = make_sweep(tmp_path / "base", {"bdl": BASE, "sbdl": [0.70, 0.71, 0.69, 0.72]})
    new = make_sweep(tmp_path / "new", {"myloss": [0.60, 0.61, 0.62]}, extra={"loss.params.gamma": 2.0})
    result = compare_frames(collect(new).frame, collect(base).frame, by=["loss.name"])
    verdicts = dict(zip(result.cells["base:loss.name"], result.cells["verdict"], strict=True))
    assert verdicts == {"bdl": "better", "sbdl": "worse"}
    assert "loss.params.gamma" not in result.match_keys  # only the new loss has it: it cannot block matching
    assert run_cli(new, base, "--by", "loss.name") == 1
    # Without --by the loss names do not overlap either: found automatically, same answer.
    auto = compare_frames(collect(new).frame, collect(base).frame)
    assert "loss.name" in auto.auto_by and sorted(auto.cells["verdict"]) == ["better", "worse"]


def test_collected_csv_baseline_matches_a_fresh_sweep(tmp_path: Path) -> None:
    base = make_sweep(tmp_path / "base", {"bdl": BASE}, extra={"loss.params.alpha": 2})
    csv = save_frame(collect(base).frame, tmp_path / "committed")[0]
    new = make_sweep(tmp_path / "new", {"bdl": [0.40, 0.41, 0.42]}, extra={"loss.params.alpha": 2.0})
    result = compare_frames(collect(new).frame, load_frame(csv))
    assert result.cells["verdict"].tolist() == ["worse"] and result.auto_by == []
    assert run_cli(new, csv) == 1


def test_nothing_to_compare_exits_2(tmp_path: Path) -> None:
    base = make_sweep(tmp_path / "base", {"bdl": BASE})
    other = tmp_path / "other"
    write_run(other / "runs", {"loss.name": "bdl", "seed": 0}, {"emb": recall_metrics(0.5)}, dataset="cub")
    assert run_cli(other, base) == 2  # datasets never match across
    assert run_cli(tmp_path / "missing", base) == 2


def test_single_runs_both_sides_are_not_a_regression(tmp_path: Path) -> None:
    base = make_sweep(tmp_path / "base", {"bdl": [0.50]})
    new = make_sweep(tmp_path / "new", {"bdl": [0.30]})
    result = compare_frames(collect(new).frame, collect(base).frame)
    assert result.cells["verdict"].tolist() == ["n/a"]
    assert run_cli(new, base) == 0
