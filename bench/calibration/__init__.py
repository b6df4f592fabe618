"""`dmlbench calibrate`: measure, rather than assume, how `compare` behaves on a regression preset.

Runs (into OUT/runs, each a normal run folder; finished ones are reused):
- the preset's base config with loss LOSS for the preset's seeds plus FRESH further seeds (the pool);
- the same with the planted loss `relabelled` (LOSS trained on a `--worse` fraction of wrong labels) and
  with a smaller fraction (`--better`), for the same seeds.
Comparisons, each drawn DRAWS times with a seeded RNG (every draw has the preset's number of seeds, n):
- A/A: two disjoint random sets of n seeds of LOSS itself (Welch, different seeds): should be `same`;
- worse: relabelled(worse) against LOSS on the same n random seeds (paired): should be `worse`;
- better: relabelled(better) against relabelled(worse) on the same n random seeds: less label noise, so
  should be `better`.
Each comparison is `compare`'s (`estimate_cell`: seeds plus query noise, Recall@1 of Emb, 5% two-sided).
The draws share runs, so they are not independent experiments: the rates say how the verdicts behave
over the seeds one could have picked, with the query set fixed.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmlbench import rundir
from dmlbench.config import apply_overrides, config_from_dict
from dmlbench.results.collect import collect, load_hits
from dmlbench.results.compare import estimate_cell, verdict

PLANTED_PLUGIN = "dmlbench.calibration.planted"


@dataclass
class CalibrationResult:
    n: int
    draws: int
    rates: dict[str, dict[str, float]]  # comparison -> verdict -> fraction of draws
    mean_diff: dict[str, float]  # comparison -> mean difference over draws (points)
    mean_mde: dict[str, float]  # comparison -> mean MDE over draws (points)
    runs: int

    def markdown(self) -> str:
        lines = [
            f"{self.draws} draws of n = {self.n} seeds each, {self.runs} runs; Recall@1 (Emb), x100.",
            "",
            "| comparison | expected | better | same | worse | mean diff | mean MDE |",
            "|:--|:--|--:|--:|--:|--:|--:|",
        ]
        for name, expected in (("A/A", "same"), ("planted worse", "worse"), ("planted better", "better")):
            r = self.rates.get(name)
            if r is None:
                continue
            lines.append(
                f"| {name} | {expected} | {r['better']:.0%} | {r['same']:.0%} | {r['worse']:.0%} "
                f"| {self.mean_diff[name]:+.2f} | {self.mean_mde[name]:.2f} |"
            )
        return "\n".join(lines)


def run_configs(
    base: dict[str, Any],
    out: Path,
    loss: str,
    seeds: Sequence[int],
    worse: float,
    better: float,
    invert_worse: bool = False,
) -> dict[str, dict[int, Any]]:
    """The configs of every calibration run: {"clean" | "worse" | "better": {seed: Config}}."""
    cfg = config_from_dict({**base, "output_dir": str(out / "runs"), "name": "calibration"})
    arms: dict[str, dict[int, Any]] = {"clean": {}, "worse": {}, "better": {}}
    for seed in seeds:
        arms["clean"][seed] = apply_overrides(cfg, {"seed": seed, "loss.name": loss})
        for arm, fraction in (("worse", worse), ("better", better)):
            arms[arm][seed] = apply_overrides(
                cfg,
                {
                    "seed": seed,
                    "plugins": [PLANTED_PLUGIN],
                    "loss.name": "relabelled",
                    "loss.params": {"base": loss, "fraction": fraction}
                    | ({"invert": True} if arm == "worse" and invert_worse else {}),
                },
            )
    return arms


def _runs_of(frame: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    sel = frame[(frame["metric"] == "recall") & (frame["k"] == 1) & (frame["layer"] == "emb")]
    return sel[sel["run_id"].isin(run_ids)]


def calibrate(
    base: dict[str, Any],
    preset_seeds: Sequence[int],
    out: Path,
    *,
    loss: str = "bdl",
    fresh: int = 20,
    draws: int = 40,
    worse: float = 0.5,
    better: float = 0.25,
    invert_worse: bool = False,
    train: Callable[[Any], Any] | None = None,
    reuse: Path | None = None,
    log: Callable[[str], None] = print,
) -> CalibrationResult:
    """Train the runs (skipping finished ones) and draw the comparisons of the module docstring.

    `reuse`: a runs folder (e.g. sweeps/regression/runs) whose finished runs of the same run_id are
    copied instead of trained again (the clean arm on the preset's seeds is the baseline's runs).
    """
    from dmlbench.config import run_id
    from dmlbench.train import train_run

    def train_or_copy(cfg: Any) -> Any:
        source = None if reuse is None else reuse / run_id(cfg)
        target = out / "runs" / run_id(cfg)
        if source is not None and rundir.is_done(source) and not target.exists():
            shutil.copytree(source, target)
            return None
        return train_run(cfg, progress=False)

    train = train or train_or_copy
    n = len(preset_seeds)
    seeds = [*preset_seeds, *range(max(preset_seeds) + 1, max(preset_seeds) + 1 + fresh)]
    arms = run_configs(base, out, loss, seeds, worse, better, invert_worse)
    total = sum(len(a) for a in arms.values())
    done = 0
    for arm in ("worse", "better", "clean"):  # clean last: its preset seeds may be copied from `reuse`
        for seed, cfg in arms[arm].items():
            done += 1
            log(f"[{done}/{total}] {arm} seed {seed}")
            train(cfg)
    frame = collect(out / "runs").frame
    hits = load_hits(out / "runs", frame)
    ids = {arm: {seed: run_id(cfg) for seed, cfg in configs.items()} for arm, configs in arms.items()}
    rng = np.random.default_rng(0)
    outcomes: dict[str, list[tuple[str, float, float]]] = {"A/A": [], "planted worse": [], "planted better": []}

    def judge(name: str, new_ids: list[str], base_ids: list[str]) -> None:
        est = estimate_cell(
            _runs_of(frame, new_ids), _runs_of(frame, base_ids), with_queries=True, hits_new=hits, hits_base=hits
        )
        outcomes[name].append((verdict(*est.interval()), est.diff * 100, est.mde * 100))

    for _ in range(draws):
        perm = rng.permutation(len(seeds))
        first, second = [seeds[i] for i in perm[:n]], [seeds[i] for i in perm[n : 2 * n]]
        if len(second) == n:
            judge("A/A", [ids["clean"][s] for s in first], [ids["clean"][s] for s in second])
        judge("planted worse", [ids["worse"][s] for s in first], [ids["clean"][s] for s in first])
        judge("planted better", [ids["better"][s] for s in first], [ids["worse"][s] for s in first])
    rates, diffs, mdes = {}, {}, {}
    for name, results in outcomes.items():
        if not results:
            continue
        verdicts = [v for v, _, _ in results]
        rates[name] = {v: verdicts.count(v) / len(verdicts) for v in ("better", "same", "worse")}
        diffs[name] = float(np.mean([d for _, d, _ in results]))
        mdes[name] = float(np.nanmean([m for _, _, m in results])) if results else math.nan
    return CalibrationResult(n, draws, rates, diffs, mdes, total)
