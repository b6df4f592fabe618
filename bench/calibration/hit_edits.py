"""Power with real query noise: planted effects of exactly known size, made by editing a real loss's hits.

A new loss differs from its reference query by query: it gets some items right that the reference gets
wrong and the other way round, consistently over seeds, and that disagreement -- not the seeds -- is
what limits a verdict on the fast tier. Planting an effect by training a deliberately damaged loss
(relabelled labels) ranks queries almost as the original does, so it understates that noise. Here the
planted "new loss" is each seed's real hits of a baseline loss, edited:

- a random order of the classes (items) is drawn per direction (down, up), shared by every seed: the
  planted loss is worse on the same items in every seed, as a real loss is;
- in each seed, the first `n_down` hits in the down order are turned into misses and the first `n_up`
  misses in the up order into hits, n_up - n_down = round(effect x Q): every run's Recall@1 moves by
  exactly that, so the true effect is known, not estimated;
- `churn` = min(n_up, n_down) / Q sets the query disagreement; `match_churn` picks it so that the
  comparison's standard error equals the median of the real baseline loss pairs' (their query noise).

Each draw also redraws the query sample as `compare`'s query term models it -- the items (classes) drawn
with replacement, each with all its queries -- so the estimated difference scatters as it would over
another draw of the test items, around a true effect known exactly. (The seeds are the baseline's own: the
edits are the same in every seed, so the seed part of the paired variance is what the loss's own runs give.)
Each draw then asks `compare`'s question of the documented workflow (the new loss against its reference,
run on the same machine: paired by seed, plus the clustered query term, 5% two-sided) and records the
verdict. Rates come with Wilson 95% intervals.

>>> hits = np.array([[1, 1, 0, 0, 1, 0, 1, 0]] * 2, np.uint8)
>>> edited = edit_hits(hits, np.arange(8) // 2, effect=-0.25, churn=0.125, rng=np.random.default_rng(0))
>>> (edited.mean(axis=1) - hits.mean(axis=1)).tolist()   # exactly -2 of 8 queries in every seed
[-0.25, -0.25]
>>> [round(x, 3) for x in wilson(8, 10)]
[0.49, 0.943]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dmlbench.results.compare import estimate_cell, hit_matrix, verdict


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a rate."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _order(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Query indices grouped by class, the classes in random order, random order within a class."""
    _, group = np.unique(classes, return_inverse=True)
    rank = rng.permutation(int(group.max()) + 1)[group]
    return np.lexsort((rng.random(len(classes)), rank))


def edit_hits(
    hits: np.ndarray, classes: np.ndarray, effect: float, churn: float, rng: np.random.Generator
) -> np.ndarray:
    """(seeds x queries) hits with every row's mean moved by exactly round(effect x Q) / Q (module docstring)."""
    q = hits.shape[1]
    net = round(effect * q)
    base = round(churn * q)
    n_up, n_down = base + max(net, 0), base + max(-net, 0)
    down_order, up_order = _order(classes, rng), _order(classes, rng)
    out = hits.copy()
    for row, seed_hits in zip(out, hits, strict=True):
        down = down_order[seed_hits[down_order] == 1][:n_down]
        free = seed_hits == 0
        up = up_order[free[up_order]][:n_up]
        if len(down) < n_down or len(up) < n_up:
            raise ValueError(f"cannot plant {effect:+g} with churn {churn:g}: too few hits or misses to edit")
        row[down], row[up] = 0, 1
    return out


@dataclass
class PowerResult:
    effects: dict[float, dict[str, int]]  # planted effect (fraction) -> verdict -> count
    draws: int
    churn: float
    se_real: float  # median se of the real baseline pairs (fraction)
    se_planted: float  # mean se of the planted comparisons at effect 0
    losses: list[str]
    seeds: int
    queries: int

    def markdown(self) -> str:
        lines = [
            f"{self.draws} draws per effect over {', '.join(self.losses)} ({self.seeds} seeds, {self.queries} queries "
            f"each); churn {self.churn:.3f} of the queries: comparison se {self.se_planted * 100:.2f} points "
            f"(the real baseline pairs' median: {self.se_real * 100:.2f}). Paired + queries, 5% two-sided.",
            "",
            "| planted effect (points) | worse | same | better | expected verdict, rate [95% CI] |",
            "|--:|--:|--:|--:|:--|",
        ]
        for effect, counts in self.effects.items():
            n = sum(counts.values())
            expected = "worse" if effect < 0 else "better" if effect > 0 else "same"
            low, high = wilson(counts.get(expected, 0), n)
            lines.append(
                f"| {effect * 100:+.2f} | {counts.get('worse', 0)} | {counts.get('same', 0)} | {counts.get('better', 0)} "
                f"| {expected}: {counts.get(expected, 0) / n:.1%} [{low:.1%}, {high:.1%}] |"
            )
        return "\n".join(lines)


Hits = Mapping[str, Mapping[str, np.ndarray]]


def _cell(frame: pd.DataFrame, loss: str) -> pd.DataFrame:
    sel = frame[
        (frame["metric"] == "recall")
        & (frame["k"] == 1)
        & (frame["layer"] == "emb")
        & (frame["loss.name"] == loss)
    ]
    return sel.sort_values("seed")


def redraw_items(classes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A cluster bootstrap of the queries: (query indices, cluster ids) of G classes drawn with replacement."""
    _, group = np.unique(classes, return_inverse=True)
    members = np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group))[:-1])
    drawn = rng.integers(0, len(members), len(members))
    index = np.concatenate([members[g] for g in drawn])
    cluster = np.repeat(np.arange(len(drawn)), [len(members[g]) for g in drawn])
    return index, cluster


def _judge(base_runs: pd.DataFrame, matrix: np.ndarray, edited: np.ndarray, classes: np.ndarray,
           rng: np.random.Generator | None) -> tuple[str, float]:  # fmt: skip
    """compare's verdict and se for `edited` (the planted loss) against `matrix` (its reference), paired;
    with `rng`, over a redrawn sample of the items (`redraw_items`)."""
    if rng is not None:
        index, classes = redraw_items(classes, rng)
        matrix, edited = matrix[:, index], edited[:, index]
    positions = np.arange(matrix.shape[1])
    ids = [str(r) for r in base_runs["run_id"]]
    new_runs = base_runs.assign(run_id=[f"planted-{r}" for r in ids], value=edited.mean(axis=1))
    ref_runs = base_runs.assign(value=matrix.mean(axis=1))
    hits: dict[str, dict[str, np.ndarray]] = {}
    for i, run in enumerate(ids):
        common = {"positions": positions, "classes": classes}
        hits[run] = common | {"emb": matrix[i]}
        hits[f"planted-{run}"] = common | {"emb": edited[i]}
    est = estimate_cell(new_runs, ref_runs, with_queries=True, hits_new=hits, hits_base=hits)
    return verdict(*est.interval()), est.se


def power_by_hit_edits(
    frame: pd.DataFrame,
    hits: Hits,
    *,
    effects: tuple[float, ...] = (-0.01, -0.005, 0.005),
    draws: int = 100,
    churn: float | None = None,
    seed: int = 0,
) -> PowerResult:
    """Draw planted comparisons for every baseline loss of `frame` (a collected regression baseline)."""
    rng = np.random.default_rng(seed)
    losses = sorted(frame["loss.name"].dropna().unique())
    cells = {loss: _cell(frame, loss) for loss in losses}
    matrices = {}
    for loss, runs in cells.items():
        m = hit_matrix(runs, hits, "emb")
        if m is None:
            raise ValueError(f"{loss}: its runs have no per-query hits (query_hits.npz) to edit")
        matrices[loss] = m
    real = [
        estimate_cell(cells[a], cells[b], with_queries=True, hits_new=hits, hits_base=hits).se
        for i, a in enumerate(losses) for b in losses[i + 1 :]
    ]  # fmt: skip
    se_real = float(np.median(real))

    def planted_se(c: float, n: int = 8) -> float:
        ses = []
        for j in range(n):
            m = matrices[losses[j % len(losses)]]
            edited = edit_hits(m.hits.astype(np.uint8), _classes(m), 0.0, c, rng)
            ses.append(_judge(cells[losses[j % len(losses)]], m.hits, edited, _classes(m), None)[1])
        return float(np.mean(ses))

    if churn is None:  # bisection: the planted comparison's se grows with the churn
        low, high = 0.0, 0.2
        for _ in range(12):
            mid = (low + high) / 2
            low, high = (mid, high) if planted_se(mid) < se_real else (low, mid)
        churn = (low + high) / 2
    counts: dict[float, dict[str, int]] = {}
    for effect in (0.0, *effects):
        tally: dict[str, int] = {}
        for j in range(draws):
            loss = losses[j % len(losses)]
            m = matrices[loss]
            edited = edit_hits(m.hits.astype(np.uint8), _classes(m), effect, churn, rng)
            v, _ = _judge(cells[loss], m.hits, edited, _classes(m), rng)
            tally[v] = tally.get(v, 0) + 1
        counts[effect] = tally
    first = matrices[losses[0]]
    return PowerResult(
        counts, draws, churn, se_real, planted_se(churn), losses, first.hits.shape[0], first.hits.shape[1]
    )


def _classes(m: object) -> np.ndarray:
    classes = getattr(m, "classes", None)
    positions = getattr(m, "positions")  # noqa: B009
    return np.asarray(classes) if classes is not None else np.arange(len(positions))
