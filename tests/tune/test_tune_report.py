"""A tune's report is publishable: one row per method (rounded, mean ± 95% CI, labelled), a verdict against
the best method by compare's statistics, no table whose keys do not vary; every method's search space by
one rule (train.lr + the loss's parameters, a plugin's from its __init__); `tune --trials/--folds/--seeds`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from support.cli import run_cli
from support.configs import tiny_run_config
from support.tune import ENV, STANDIN, write_spec

from dmlbench.errors import TuneError
from dmlbench.losses import register
from dmlbench.losses.base import MetricLoss
from dmlbench.results import power
from dmlbench.tune.loop import run_tune
from dmlbench.tune.report import write_tune_report
from dmlbench.tune.spec import load_spec, spec_from_dict
from dmlbench.tune.study import existing_studies

METHODS = ["bdl", "multi-similarity", "batch-hard"]


def body_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_three_method_tune_table_one_row_per_method_with_verdict(tiny_synthshop: Path, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, tiny_synthshop, executor={"kind": "inline"}, methods=[{"loss": m} for m in METHODS],
                           trials=2, seeds=3)
    run_tune(load_spec(spec_path), runner=STANDIN, log=lambda _: None)
    out = tmp_path / "tune"
    text, written = write_tune_report(out, None, plots=False)
    rows = body_rows(text)
    header, body = rows[0], rows[2:]
    assert [r[0] for r in body] == METHODS  # one row per method, in the spec's order
    assert header[:4] == ["method", "MAP@R", "R@1", "n"] and header[-1] == "verdict" and "searched" in header
    assert "Mean ± 95% CI over seeds" in text  # what ± is, in the caption
    verdicts = {r[0]: r[-1] for r in body}
    assert sorted(verdicts.values()).count("best") == 1
    assert set(verdicts.values()) <= {"best", "better", "same", "worse"}
    # the verdict's difference and interval are compare's paired t over the shared seeds, Bonferroni over 2
    results = pd.read_csv(out / "report" / "results.csv")
    emb = results[(results["layer"] == "emb") & (results["metric"] == "map_r")]
    per = {m: emb[emb["name"] == m].sort_values("seed")["value"].to_numpy() for m in METHODS}
    best = max(per, key=lambda m: per[m].mean())
    assert verdicts[best] == "best"
    other = next(m for m in METHODS if m != best)
    est = power.paired(per[other], per[best])
    low, high = est.interval(1 - 0.05 / 2)
    row = next(r for r in body if r[0] == other)
    diff_cell = row[header.index("Δ MAP@R vs best [CI]")]
    assert diff_cell == f"{est.diff * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"
    assert row[header.index("searched")] == {"bdl": "3", "multi-similarity": "4", "batch-hard": "2"}[other]
    # every table of the report: one row per method, rounded values, no alpha x beta table of one cell per row
    tables = sorted(p.name for p in (out / "report" / "tables").glob("*.md"))
    assert "alpha_beta_synthshop.md" not in tables and {"protocol_synthshop.md", "methods_synthshop.md"} <= set(tables)
    for name in tables:
        md = (out / "report" / "tables" / name).read_text()
        digits = [len(n.replace(".", "").lstrip("0")) for n in re.findall(r"\d+\.\d+", md)]
        assert max(digits) <= 4, (name, md)  # rounded: no 17-digit parameter values
        assert "nan" not in md
        if name != "layers_synthshop.md":
            assert [r[0] for r in body_rows(md)[2:]] == sorted(METHODS) if name != "protocol_synthshop.md" else METHODS
    tex = (out / "report" / "tables" / "protocol_synthshop.tex").read_text()
    assert "verdict" in tex and r"\resizebox" in tex


@register("test-circle-space")
class CircleLike(MetricLoss):
    """A plugin-style loss with two float parameters and no declared ranges."""

    def __init__(self, m: float = 0.25, gamma: float = 256.0, normalise: bool = True) -> None:
        super().__init__()
        self.m, self.gamma = m, gamma

    def forward(self, embeddings: Any, labels: Any, **_: Any) -> Any:
        return embeddings.sum() * 0


@register("test-declared-space")
class Declared(CircleLike):
    search_space = {"m": {"low": 0.1, "high": 0.4}}


def parse(tmp_path: Path, methods: list[Any]) -> dict[str, dict[str, Any]]:
    base = tiny_run_config(tmp_path, tmp_path / "unused")
    spec = spec_from_dict({"name": "s", "base": base, "methods": methods, "trials": 2})
    return {m.name: m.space_raw for m in spec.methods}


def test_every_method_searches_lr_plus_its_loss_parameters(tmp_path: Path) -> None:
    spaces = parse(tmp_path, ["bdl", "test-circle-space", "test-declared-space",
                              {"name": "mine", "loss": "test-circle-space", "space": {"loss.params.m": {"low": 0.2, "high": 0.3}}},
                              {"name": "pinned", "loss": "test-circle-space", "set": {"loss.params.gamma": 128.0}}])
    assert list(spaces["bdl"]) == ["loss.params.alpha", "loss.params.beta", "train.lr"]
    # a plugin's float parameters from its __init__ defaults d: [d/4, 4d] log; the bool is not searched
    assert spaces["test-circle-space"] == {
        "loss.params.m": {"low": 0.0625, "high": 1.0, "log": True},
        "loss.params.gamma": {"low": 64.0, "high": 1024.0, "log": True},
        "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    }
    assert list(spaces["test-declared-space"]) == ["loss.params.m", "train.lr"]  # the ranges it declares
    # a given space is merged: its range replaces m's, train.lr and gamma stay searched
    assert spaces["mine"]["loss.params.m"] == {"low": 0.2, "high": 0.3}
    assert set(spaces["mine"]) == {"loss.params.m", "loss.params.gamma", "train.lr"}
    assert set(spaces["pinned"]) == {"loss.params.m", "train.lr"}  # `set` fixes gamma: not searched
    with pytest.raises(TuneError, match="both searched .* and fixed"):
        parse(tmp_path, [{"loss": "bdl", "space": {"loss.params.alpha": {"low": 1, "high": 2}}, "set": {"loss.params.alpha": 2.0}}])


def test_tune_flags_scale_trials_folds_and_seeds(tiny_synthshop: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, tiny_synthshop, executor={"kind": "inline"}, trials=5, folds=3, seeds=4)
    out = tmp_path / "small"
    proc = run_cli("tune", str(spec), "--trials", "2", "--folds", "2", "--seeds", "1", "--out", str(out), "--runner", STANDIN, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "2 methods x 2 trials x 2 folds, then 1 seeds" in proc.stdout
    assert {m: len(t) for m, t in existing_studies(out).items()} == {"bdl": 2, "multi-similarity": 2}
    saved = yaml.safe_load((out / "tune.yaml").read_text())
    assert (saved["trials"], saved["folds"], saved["seeds"]) == (2, 2, 1)
    assert len(list((out / "final" / "runs").iterdir())) == 2
    assert np.all([p.is_dir() for p in (out / "trials" / "runs").iterdir()])
