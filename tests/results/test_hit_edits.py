"""Power by hit edits (dmlbench.calibration.hit_edits): exact planted effects, real query noise, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.calibration.hit_edits import edit_hits, power_by_hit_edits, redraw_items
from dmlbench.cli import main
from dmlbench.evaluate.hits import save_query_hits
from dmlbench.results.collect import collect, load_hits

Q = 600


def baseline(root: Path) -> Path:
    """Two losses x 6 seeds whose hits differ by item (class), as real losses do."""
    rng = np.random.default_rng(3)
    classes = np.arange(Q) // 3
    for loss, skill in (("bdl", 0.45), ("ms", 0.55)):
        item_p = np.clip(rng.normal(skill, 0.25, Q // 3), 0.02, 0.98)[classes]
        for seed in range(6):
            hits = (rng.random(Q) < item_p).astype(np.uint8)
            run = write_run(
                root / "runs", {"loss.name": loss, "seed": seed}, {"emb": recall_metrics(float(hits.mean()))}
            )
            save_query_hits(run, {"positions": np.arange(Q), "classes": classes, "emb": hits})
    return root


def test_edits_move_every_seed_by_exactly_the_planted_effect() -> None:
    rng = np.random.default_rng(0)
    hits = (rng.random((5, Q)) < 0.4).astype(np.uint8)
    classes = np.arange(Q) // 3
    edited = edit_hits(hits, classes, effect=-0.05, churn=0.02, rng=rng)
    assert np.array_equal(edited.sum(axis=1).astype(int) - hits.sum(axis=1).astype(int), np.full(5, -30))
    changed = (edited != hits).any(axis=0)
    assert changed.sum() < 5 * (30 + 2 * 12)  # the same items in every seed, not fresh ones each time
    index, cluster = redraw_items(classes, rng)
    assert len(np.unique(cluster)) == Q // 3 and len(index) == Q  # every class has 3 queries


def test_power_grows_with_the_effect_and_aa_stays_same(tmp_path: Path) -> None:
    root = baseline(tmp_path / "base")
    frame = collect(root).frame
    result = power_by_hit_edits(frame, load_hits(root, frame), effects=(-0.15, -0.01), draws=30)
    assert result.churn > 0 and abs(result.se_planted - result.se_real) < 0.5 * result.se_real
    assert result.effects[0.0].get("worse", 0) <= 3  # 5% two-sided: about 1 false `worse` in 40 at most
    assert result.effects[-0.15].get("worse", 0) >= 27
    assert result.effects[-0.15].get("worse", 0) > result.effects[-0.01].get("worse", 0)
    assert "| -15.00 |" in result.markdown()


def test_cli_writes_power_md(tmp_path: Path) -> None:
    root = baseline(tmp_path / "base")
    assert main(["calibrate", "--hit-edits", str(root), "--draws", "4", "--out", str(tmp_path / "out")]) == 0
    assert "planted effect" in (tmp_path / "out" / "power.md").read_text()
    bare = tmp_path / "bare"
    write_run(bare / "runs", {"loss.name": "bdl", "seed": 0}, {"emb": recall_metrics(0.5)})
    assert main(["calibrate", "--hit-edits", str(bare)]) == 2  # no hits to edit: one line, exit 2
    assert isinstance(collect(bare).frame, pd.DataFrame)
