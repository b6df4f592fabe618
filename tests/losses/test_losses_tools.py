"""Around the losses: config-time compatibility, plugins, `time-losses`, the ablation configs, the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dmlbench.cli import main
from dmlbench.config import load_config
from dmlbench.losses import LOSSES, build
from dmlbench.perf.time_losses import FLOOR_NAME, format_table, make_inputs, time_losses
from dmlbench.validation.compat import compatibility_error

REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


# ---------------------------------------------------------------- compatibility


def test_compatible_settings_pass() -> None:
    assert compatibility_error("bdl", "pairs", 0) is None
    assert compatibility_error("bdl", "tuples", 0) is None
    assert compatibility_error("sbdl", "tuples", 40) is None
    assert compatibility_error("triplet", "tuples", 0) is None
    assert compatibility_error("batch-hard", "pairs", 0) is None


@pytest.mark.parametrize(
    ("loss", "layout", "attributes", "params", "fragment"),
    [
        ("sbdl", "pairs", 0, None, "needs attribute labels"),
        ("bce-attr", "pairs", 0, None, "needs attribute labels"),
        ("bdl", "pairs", 0, {"lambda_attr": 0.5}, "needs attribute labels"),
        ("triplet", "pairs", 0, None, "use an image-wise sampler"),
        ("multi-similarity", "tuples", 0, None, "use a batch-wise"),
        ("batch-hard", "tuples", 0, None, "use a batch-wise"),
        ("bld", "pairs", 0, None, "did you mean 'bdl'"),
        ("bdl", "pairs", 0, {"alpah": 2}, "did you mean 'alpha'"),
    ],
)
def test_incompatible_settings_say_what_to_do(
    loss: str, layout: str, attributes: int, params: dict | None, fragment: str
) -> None:
    message = compatibility_error(loss, layout, attributes, params)
    assert message is not None and fragment in message


# ---------------------------------------------------------------- ablation configs


@pytest.mark.parametrize(
    ("name", "loss", "needs_attributes"),
    [
        ("metric-only", "bdl", False),
        ("attribute-only", "bce-attr", True),
        ("multitask", "bdl", True),
        ("full", "sbdl", True),
    ],
)
def test_sgml_ablation_configs_build(name: str, loss: str, needs_attributes: bool) -> None:
    cfg = load_config(REPO / "bench" / "configs" / f"sgml-{name}.yaml")
    assert cfg.loss.name == loss
    built = build(cfg.loss.name, **cfg.loss.params)
    assert built.needs_attributes is needs_attributes
    assert (compatibility_error(cfg.loss.name, "pairs", 0, cfg.loss.params) is None) is not needs_attributes
    if name == "attribute-only":
        assert "fc" in cfg.eval.layers and "emb" not in cfg.eval.layers


# ---------------------------------------------------------------- time-losses


def test_make_inputs_layouts() -> None:
    pairs = make_inputs(12, 4, image_wise=False)
    assert pairs.tuples is None and pairs.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    wise = make_inputs(10, 4, image_wise=True)
    for a, p, n in wise.tuples.tolist():
        assert wise.labels[a] == wise.labels[p] != wise.labels[n]


def test_time_losses_rows_and_table() -> None:
    rows = time_losses(["bdl", "triplet", "sbdl"], [16], [8], repeats=2, warmup=1)
    assert [r.loss for r in rows] == [FLOOR_NAME, "bdl", "triplet", "sbdl"]
    assert all(r.median_ms > 0 and r.floor_ms > 0 for r in rows)  # each loss against the floor timed alternately with it
    assert rows[0].floor_ms == rows[0].median_ms
    assert rows[0].floor_multiple == 1.0
    table = format_table(rows)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    assert header == ["loss", "batch", "dim", "median ms", "x GEMM floor"]


def test_time_losses_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "time-losses",
            "--batch",
            "8,12",
            "--dim",
            "4",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--losses",
            "bdl,batch-hard",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert len(re.findall(r"^\| batch-hard\s+\|\s+(8|12) ", out, flags=re.M)) == 2
    assert "x GEMM floor" in out


def test_time_losses_cli_unknown_loss(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["time-losses", "--losses", "bld", "--batch", "8", "--dim", "4"]) == 2
    assert "did you mean 'bdl'" in capsys.readouterr().err


# ---------------------------------------------------------------- plugins and docs


def test_plugin_loss_works_in_time_losses_and_compat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    code = main(
        ["--plugin", "example_losses", "time-losses", "--losses", "cosine-margin,bdl", "--batch", "8", "--dim", "4",
         "--repeats", "1", "--warmup", "0"]
    )  # fmt: skip
    assert code == 0
    assert re.search(r"^\| cosine-margin\s+\|\s+8 ", capsys.readouterr().out, flags=re.M)
    assert "cosine-margin" in LOSSES.names() and LOSSES.params("cosine-margin") == {"margin": 0.3}
    assert compatibility_error("cosine-margin", "pairs", 0) is None
    loss = build("cosine-margin", margin=0.0)
    emb = make_inputs(8, 4, image_wise=False).embeddings
    assert loss(emb, make_inputs(8, 4, image_wise=False).labels).item() > 0
    assert set(loss.last_stats) >= {"active_pairs", "pos_sim", "neg_sim", "degenerate"}


def test_docs_show_the_plugin_loss_in_under_30_lines() -> None:
    doc = (REPO / "docs" / "adding_a_loss.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    plugin = (PLUGINS / "example_losses.py").read_text()
    assert blocks[0] == plugin  # the documented loss is the one the plugin test runs
    assert len(plugin.splitlines()) < 30
