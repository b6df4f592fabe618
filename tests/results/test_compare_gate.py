"""compare's gate and refusals (issue 24): one reference, the margin, environments, and every edge case
that used to pass the gate or mislead (NaN, unreadable or missing hits, mismatched setups, zero variance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench import rundir
from dmlbench.cli import main
from dmlbench.evaluate.hits import save_query_hits
from dmlbench.results.collect import collect, load_hits
from dmlbench.results.compare import compare_frames

BASE = [0.50, 0.52, 0.51, 0.53]
Q = 2000  # queries per run


def sweep(root: Path, r1_by_loss: dict[str, list[float]], *, hits: bool = True, env: dict[str, str] | None = None,
          extra: dict[str, object] | None = None, dataset_facts: dict[str, int] | None = None) -> Path:  # fmt: skip
    """Runs with recall@1 values; `hits`: Q query hits per run (mean = the value, rounded to 1/Q)."""
    for loss, values in r1_by_loss.items():
        for seed, r1 in enumerate(values):
            run = write_run(
                root / "runs", {"loss.name": loss, "seed": seed, **(extra or {})}, {"emb": recall_metrics(r1)}
            )
            if hits and np.isfinite(r1):
                row = (np.arange(Q) < round(r1 * Q)).astype(np.uint8)
                save_query_hits(
                    run, {"positions": np.arange(Q), "classes": np.arange(Q) // 2, "emb": np.roll(row, seed)}
                )
            if env is not None or dataset_facts is not None:
                rundir.atomic_write_json(
                    run / rundir.ENVIRONMENT, {"fingerprint": env or {}, "dataset": dataset_facts or {}}
                )
    return root


def cli(*argv: object) -> int:
    return main(["compare", *map(str, argv)])


def test_nan_metric_exits_1_naming_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE})
    new = sweep(tmp_path / "new", {"bdl": [0.5, 0.51, float("nan"), 0.52]})
    nan_run = next(p.name for p in (new / "runs").iterdir() if "NaN" in (p / rundir.METRICS).read_text())
    assert cli(new, base) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and nan_run in err and "NaN" in err


def test_missing_metric_exits_1_naming_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE})
    new = sweep(tmp_path / "new", {"bdl": [0.5, 0.51, 0.52]})
    lacking = write_run(new / "runs", {"loss.name": "bdl", "seed": 3}, {"fc": recall_metrics(0.5)})
    assert cli(new, base) == 1
    assert lacking.name in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not a zip at all", None])
def test_unreadable_hits_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE})
    new = sweep(tmp_path / "new", {"bdl": BASE})
    victim = sorted((new / "runs").iterdir())[0] / rundir.QUERY_HITS
    data = victim.read_bytes()
    victim.write_bytes(content if content is not None else data[: len(data) // 2])  # garbage, or truncated
    assert cli(new, base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreadable query hits" in err and "Traceback" not in err


def test_hits_of_the_wrong_length_are_unreadable(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE})
    new = sweep(tmp_path / "new", {"bdl": BASE})
    run = sorted((new / "runs").iterdir())[0]
    save_query_hits(run, {"positions": np.arange(8), "emb": np.ones(5, np.uint8)})
    assert cli(new, base) == 2


def test_missing_hits_say_seeds_only_in_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE})
    new = sweep(tmp_path / "new", {"bdl": BASE}, hits=False)
    assert cli(new, base) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| synthshop"))
    assert row.rstrip(" |").endswith("same (seeds only)")
    new_frame = collect(sweep(tmp_path / "h", {"bdl": BASE})).frame
    with_hits = compare_frames(new_frame, collect(base).frame, hits_new=load_hits(tmp_path / "h", new_frame),
                               hits_base=load_hits(base, collect(base).frame))  # fmt: skip
    assert with_hits.cells["note"].tolist() == [""] and "+queries" in with_hits.cells["method"].iloc[0]


@pytest.mark.parametrize(
    ("key", "new_value", "base_value"),
    [
        ("data.root", "data/synthshop-small", "data/synthshop-large"),
        ("train.tier", "full", "head"),
        ("model.backbone", "resnet18", "efficientnet_lite0"),
        ("data.image_size", 64, 96),
        ("train.epochs", 2, 3),
        ("sampler.batches_per_epoch", 10, 50),
    ],
)
def test_a_different_setup_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, new_value: object, base_value: object
) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE}, extra={key: base_value}, hits=False)
    new = sweep(tmp_path / "new", {"bdl": [v - 0.1 for v in BASE]}, extra={key: new_value}, hits=False)
    assert cli(new, base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "--allow" in err
    assert cli(new, base, "--allow", key) == 1  # compared on purpose: 10 points worse


def test_a_data_root_is_compared_by_its_folder_name(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE}, extra={"data.root": "data/synthshop-large"})
    new = sweep(tmp_path / "new", {"bdl": BASE}, extra={"data.root": "/elsewhere/synthshop-large"})
    assert cli(new, base) == 0


def test_dataset_size_and_galleries_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE}, dataset_facts={"images": 19202, "galleries": 8})
    new = sweep(tmp_path / "new", {"bdl": BASE}, dataset_facts={"images": 19202, "galleries": 1})
    assert cli(new, base) == 2 and "galleries" in capsys.readouterr().err
    small = sweep(tmp_path / "small", {"bdl": BASE}, dataset_facts={"images": 900, "galleries": 8})
    assert cli(small, base) == 2 and "dataset size (images)" in capsys.readouterr().err


def test_quickstart_against_the_committed_baseline_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path(__file__).resolve().parents[2]
    assert cli(repo / "results" / "quickstart", repo / "results" / "baseline") == 2
    err = capsys.readouterr().err
    assert "cannot compare" in err and "WORSE" not in err


def test_zero_variance_gives_no_verdict_finer_than_one_query(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": [0.5] * 4}, hits=False)
    new = sweep(tmp_path / "new", {"bdl": [0.5 + 1e-9] * 4}, hits=False)
    row = compare_frames(collect(new).frame, collect(base).frame).cells.iloc[0]
    assert row["verdict"] == "same" and row["mde"] == pytest.approx(1 / 100)  # write_run: 100 queries
    assert "no variance" in row["method"]
    far = sweep(tmp_path / "far", {"bdl": [0.55] * 4}, hits=False)
    assert compare_frames(collect(far).frame, collect(base).frame).cells["verdict"].tolist() == ["better"]


def test_min_diff_is_a_margin_not_a_blindfold(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE}, hits=False)
    better = sweep(
        tmp_path / "better", {"bdl": [v + 0.055 for v in BASE[:3]] + [BASE[3] + 0.0556]}, hits=False
    )
    new, old = collect(better).frame, collect(base).frame
    assert compare_frames(new, old, min_diff=0.06).cells["verdict"].tolist() == ["better"]  # was `same`
    worse = collect(
        sweep(tmp_path / "worse", {"bdl": [v - 0.02 for v in BASE[:3]] + [BASE[3] - 0.021]}, hits=False)
    ).frame
    row = compare_frames(worse, old, min_diff=0.05).cells.iloc[0]
    assert row["verdict"] == "non-inferior"
    assert row["mde"] == pytest.approx(
        0.05 + compare_frames(worse, old).cells["mde"].iloc[0]
    )  # the margin enters
    assert compare_frames(worse, old, min_diff=0.01).cells["verdict"].tolist() == ["worse"]


def test_new_idea_is_gated_by_one_reference_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = sweep(
        tmp_path / "base", {"bdl": BASE, "ms": [0.70, 0.71, 0.69, 0.72], "sbdl": [0.40, 0.41, 0.42, 0.43]}
    )
    new = sweep(tmp_path / "new", {"mine": [0.60, 0.61, 0.62, 0.63]})
    result = compare_frames(collect(new).frame, collect(base).frame, by=["loss"])
    gate = result.gate
    assert gate["base:loss.name"].tolist() == ["ms"] and gate["verdict"].tolist() == [
        "worse"
    ]  # best baseline
    assert set(result.cells[result.cells["role"] == "exploratory"]["note"]) == {"seeds only, exploratory"}
    assert cli(new, base, "--by", "loss") == 1
    # Against a named reference it is better; being worse than ms is information, not a regression.
    assert cli(new, base, "--by", "loss", "--reference", "bdl") == 0
    out = capsys.readouterr().out
    assert (
        "ONE reference: --reference bdl" in out and "worse (exploratory)" in out and "Bonferroni" not in out
    )


def test_an_unchanged_loss_rerun_is_same_against_its_own_cell(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE, "ms": [0.70, 0.71, 0.69, 0.72]})
    new = sweep(tmp_path / "new", {"bdl": BASE})
    result = compare_frames(collect(new).frame, collect(base).frame)
    assert result.cells["verdict"].tolist() == ["same"] and result.exit_code() == 0
    assert result.unmatched_base == [
        "dataset=synthshop, loss=ms"
    ]  # each key once, constant keys not repeated


def test_one_folder_holds_the_new_loss_and_its_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = sweep(tmp_path / "grid", {"mine": [0.60, 0.61, 0.62, 0.63], "ms": [0.70, 0.71, 0.69, 0.72]})
    assert cli(grid, "--by", "loss.name", "--reference", "ms") == 1
    assert "paired+queries" in capsys.readouterr().out
    assert cli(grid, "--by", "loss.name") == 2  # which one is the reference?


ENV = {"features": "aaaa", "device": "cpu", "device_model": "x", "torch": "2", "numpy": "1", "blas": "mkl",
       "threads": "2", "dmlbench": "0.1.0"}  # fmt: skip


def test_runs_are_paired_by_seed_only_in_one_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE}, env=ENV)
    same = sweep(
        tmp_path / "same", {"bdl": [v + 0.01 + 0.003 * (i % 2) for i, v in enumerate(BASE)]}, env=ENV
    )
    other = sweep(
        tmp_path / "other", {"bdl": [v + 0.01 for v in BASE]}, env=ENV | {"features": "bbbb", "threads": "1"}
    )
    bare = sweep(tmp_path / "bare", {"bdl": [v + 0.01 for v in BASE]})
    frame = collect(base).frame
    assert "env:features" in frame.columns
    paired = compare_frames(collect(same).frame, frame).cells.iloc[0]
    assert paired["method"] == "paired" and paired["environment"] == ""
    crossed = compare_frames(collect(other).frame, frame).cells.iloc[0]
    assert crossed["method"].startswith("welch") and crossed["method"].endswith("+env")
    assert crossed["environment"] == "features, threads" and crossed["se"] > paired["se"]
    assert cli(other, base) == 0
    assert "environments differ (features, threads)" in capsys.readouterr().out
    unknown = compare_frames(collect(bare).frame, frame).cells.iloc[0]
    assert unknown["environment"] == "not recorded by the new runs" and unknown["method"].endswith("+env")


def test_environment_json_of_a_run_becomes_columns(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", {"bdl": BASE[:2]}, env=ENV, dataset_facts={"images": 10, "galleries": 2})
    frame = collect(base).frame
    assert frame["env:threads"].astype(str).unique().tolist() == ["2"]
    assert frame["setup:galleries"].astype(str).unique().tolist() == ["2"]
    assert "train.tier" in frame.columns and "data.root" in frame.columns  # setup keys: always columns
    json.loads((sorted((base / "runs").iterdir())[0] / rundir.ENVIRONMENT).read_text())
