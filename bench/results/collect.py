"""Run folders -> one long-format results table (one row per run x layer x metric x K).

A run folder is any directory holding ``config.yaml`` (see dmlbench.rundir). Only *finished* runs
(``DONE`` marker and a readable ``metrics.json``) become rows; failed, unfinished and broken runs are
listed separately so they can never be mixed into a table.

Columns of the long frame (`LONG_COLUMNS` first, then every config key as a dotted column):
run_id, sweep, name, dataset, protocol, epoch, seed, layer, metric, k, value, num_queries,
excluded_queries, path, <grid keys and standard keys such as loss.name, sampler.name, data.dataset>.
A column whose name contains a dot is a config key: that is how tables and `compare` know which
columns describe *what was run* (as opposed to what was measured).

>>> split_metric("recall@10"), split_metric("map@r"), split_metric("r_precision")
(('recall', 10), ('map_r', None), ('r_precision', None))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dmlbench import rundir
from dmlbench.config import get_dotted, load_yaml, normalise_key
from dmlbench.errors import UsageError
from dmlbench.evaluate.hits import QUERY_KEYS, load_query_hits, read_hits_file

# Config keys every run gets as columns, whether or not it is part of a sweep.
STANDARD_KEYS: tuple[str, ...] = ("data.dataset", "model.backbone", "loss.name", "sampler.name")
# Config keys that say what was measured and how (data, tier, schedule): also columns of every run, so
# that `compare` can refuse to compare results that differ in any of them (dmlbench.results.compare).
SETUP_KEYS: tuple[str, ...] = (
    "data.root", "data.image_size", "data.subset", "train.tier", "train.epochs", "sampler.batches_per_epoch",
)  # fmt: skip
# Non-config columns read from a run's environment.json (dmlbench.train.environment): its fingerprint as
# `env:<key>`, the data's size and galleries as `setup:<key>`. Missing (older runs): empty.
ENV_PREFIX, SETUP_PREFIX = "env:", "setup:"
# Per-layer entries of metrics.json that are counts, not metrics: kept as columns of every row.
COUNT_KEYS: tuple[str, ...] = ("num_queries", "excluded_queries")
LONG_COLUMNS: tuple[str, ...] = (
    "run_id",
    "sweep",
    "name",
    "dataset",
    "protocol",
    "epoch",
    "seed",
    "layer",
    "metric",
    "k",
    "value",
    "num_queries",
    "excluded_queries",
    "path",
)
# Folders that never hold run folders: skipping them keeps the walk fast on big sweep trees.
# `replaced` holds runs a sweep set aside when their plugin code changed (dmlbench.plugins.REPLACED_DIR).
_SKIP_DIRS = frozenset({"submitit", "__pycache__", "report", ".git", "replaced"})


def split_metric(key: str) -> tuple[str, int | None]:
    """`recall@10` -> ("recall", 10); `map@r` -> ("map_r", None); `r_precision` -> ("r_precision", None)."""
    name, sep, suffix = key.partition("@")
    if not sep:
        return key, None
    if suffix.isdigit():
        return name, int(suffix)
    return f"{name}_{suffix}", None


def metric_key(metric: str, k: int | None) -> str:
    """Inverse of `split_metric` for display: ("recall", 1) -> "recall@1", ("map_r", None) -> "map@r".

    >>> metric_key("recall", 1), metric_key("map_r", None), metric_key("r_precision", None)
    ('recall@1', 'map@r', 'r_precision')
    """
    if k is not None and not (isinstance(k, float) and math.isnan(k)) and k is not pd.NA:
        return f"{metric}@{int(k)}"
    if metric == "map_r":
        return "map@r"
    return metric


def is_config_key(column: str) -> bool:
    """Columns that describe the run's configuration (grid keys) rather than a measurement.

    >>> is_config_key("loss.params.alpha"), is_config_key("value")
    (True, False)
    """
    return "." in column


def canonical_value(value: Any) -> Any:
    """Grid values as hashable scalars: lists/dicts become sorted JSON, None stays missing.

    >>> canonical_value([1, 2]), canonical_value({"b": 1, "a": 2}), canonical_value(0.5)
    ('[1, 2]', '{"a": 2, "b": 1}', 0.5)
    """
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True)
    return value


@dataclass(frozen=True)
class RunProblem:
    """A run folder that is not (or not properly) finished; listed, never collected."""

    run_id: str
    path: str
    state: str  # failed | started | broken | duplicate
    reason: str


@dataclass
class Collection:
    """The collected results of one tree of run folders."""

    root: Path
    frame: pd.DataFrame
    finished: list[Path] = field(default_factory=list)
    problems: list[RunProblem] = field(default_factory=list)
    # run_id -> query hits, when read already (several sources, collected folders); else from the run folders
    hits: dict[str, dict[str, np.ndarray]] | None = None

    def query_hits(self) -> dict[str, dict[str, np.ndarray]]:
        """run_id -> {"positions", "classes", <layer>: hits} of the runs that saved them."""
        return self.hits if self.hits is not None else load_hits(self.root, self.frame)

    def problems_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [p.__dict__ for p in self.problems], columns=["run_id", "path", "state", "reason"]
        )


def find_run_dirs(root: Path) -> list[Path]:
    """Every directory under `root` (itself included) that holds config.yaml; not descending into runs."""
    found: list[Path] = []
    stack = [str(root)]
    seen = {os.path.realpath(root)}  # a symlink back up the tree is walked once, never in circles
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        if any(e.name == rundir.CONFIG and e.is_file() for e in entries):
            found.append(Path(current))
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                continue
            if entry.is_dir():  # symlinked folders too (`runs/` on another disk), each real folder once
                real = os.path.realpath(entry.path)
                if real not in seen:
                    seen.add(real)
                    stack.append(entry.path)
    return sorted(found)


def run_keys(
    run_dir: Path, config: dict[str, Any], extra_keys: Sequence[str] = (), has_cell: bool = True
) -> tuple[str | None, dict[str, Any]]:
    """(sweep name, config-key columns) of a run: standard keys from its config, grid keys from cell.json."""
    keys: dict[str, Any] = {
        key: canonical_value(get_dotted(config, key)) for key in (*STANDARD_KEYS, *SETUP_KEYS, *extra_keys)
    }
    if not has_cell or not (run_dir / rundir.CELL).is_file():
        return None, keys
    cell = json.loads((run_dir / rundir.CELL).read_text())
    for key, value in (cell.get("grid") or {}).items():
        key = normalise_key(key)
        if key != "seed":
            keys[key] = canonical_value(value)
    return cell.get("sweep"), keys


def _read_run(
    run_dir: Path, root: Path, extra_keys: Sequence[str]
) -> tuple[list[dict[str, Any]], RunProblem | None]:
    """Rows of one finished run, or the problem that keeps it out of the table."""
    names = {e.name for e in os.scandir(run_dir)}
    rel = os.path.relpath(run_dir, root)
    fallback_id = run_dir.name
    state = rundir.run_state(run_dir, names)
    if state != "done":
        if state == "failed":
            return [], RunProblem(fallback_id, rel, "failed", rundir.error_summary(run_dir))
        return [], RunProblem(fallback_id, rel, "started", "no DONE marker (running, queued or interrupted)")
    try:
        metrics = json.loads((run_dir / rundir.METRICS).read_text())
        config = load_yaml((run_dir / rundir.CONFIG).read_text()) or {}
        layers = metrics["layers"]
        if not isinstance(layers, dict) or not layers or not all(isinstance(v, dict) for v in layers.values()):
            raise ValueError(f"'layers' must map each layer to its metrics, got {str(layers)[:60]}")
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
        return [], RunProblem(
            fallback_id, rel, "broken", f"DONE but unreadable results: {type(err).__name__}: {err}"
        )

    try:
        sweep, keys = run_keys(run_dir, config, extra_keys, has_cell=rundir.CELL in names)
    except (OSError, ValueError) as err:
        return [], RunProblem(fallback_id, rel, "broken", f"unreadable cell.json: {err}")
    base = {
        "run_id": metrics.get("run_id", fallback_id),
        "sweep": sweep,
        "name": config.get("name") or "",
        "dataset": metrics.get("dataset", get_dotted(config, "data.dataset")),
        "protocol": metrics.get("protocol"),
        "epoch": metrics.get("epoch"),
        "seed": config.get("seed"),
        "path": rel,
        **environment_columns(run_dir),
        **keys,
    }
    rows: list[dict[str, Any]] = []
    for layer, values in layers.items():
        counts = {c: values.get(c) for c in COUNT_KEYS}
        for key, value in values.items():
            if key in COUNT_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            metric, k = split_metric(key)
            rows.append({**base, "layer": layer, "metric": metric, "k": k, "value": float(value), **counts})
    return rows, None


def environment_columns(run_dir: Path) -> dict[str, Any]:
    """`env:<key>` (the fingerprint) and `setup:<key>` (data facts) columns from a run's environment.json."""
    try:
        data = json.loads((run_dir / rundir.ENVIRONMENT).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for prefix, section in ((ENV_PREFIX, "fingerprint"), (SETUP_PREFIX, "dataset")):
        values = data.get(section)
        if isinstance(values, dict):
            out |= {f"{prefix}{key}": str(value) for key, value in values.items() if "." not in str(key)}
    return out


def collect(root: str | Path, extra_keys: Sequence[str] = ()) -> Collection:
    """Read every run folder under `root` into a long DataFrame; unfinished/failed runs are listed apart."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results folder not found: {root}")
    rows: list[dict[str, Any]] = []
    finished: list[Path] = []
    problems: list[RunProblem] = []
    first_folder: dict[str, str] = {}  # run_id -> the folder collected for it
    for run_dir in find_run_dirs(root):
        run_rows, problem = _read_run(run_dir, root, extra_keys)
        if problem is None and run_rows:
            rid = run_rows[0]["run_id"]
            if rid in first_folder:
                # a copied or moved run folder: the same run, never an extra seed
                problem = RunProblem(rid, run_rows[0]["path"], "duplicate", f"same run_id as {first_folder[rid]}: counted once")
            else:
                first_folder[rid] = run_rows[0]["path"]
        if problem is not None:
            problems.append(problem)
            continue
        rows.extend(run_rows)
        finished.append(run_dir)
    return Collection(root=root, frame=to_frame(rows), finished=finished, problems=problems)


def to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the long frame with a fixed column order (measurement columns, then config keys)."""
    frame = pd.DataFrame(list(rows))
    for column in LONG_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="object")
    config_cols = sorted(c for c in frame.columns if c not in LONG_COLUMNS)
    frame = frame[[*LONG_COLUMNS, *config_cols]]
    frame["k"] = frame["k"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    for column in ("epoch", "seed", "num_queries", "excluded_queries"):
        frame[column] = frame[column].astype("Int64")
    return frame


def config_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if is_config_key(c)]


def save_frame(frame: pd.DataFrame, out_dir: Path, stem: str = "results") -> list[Path]:
    """Write `<stem>.csv` and, when pyarrow is installed, `<stem>.parquet`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{stem}.csv"]
    frame.to_csv(written[0], index=False)
    try:
        import pyarrow  # noqa: F401  (only to know whether Parquet can be written)
    except ImportError:
        return written
    parquet = out_dir / f"{stem}.parquet"
    # Parquet needs one type per column; a grid key mixing numbers and text is stored as text.
    safe = frame.copy()
    for column in config_columns(safe):
        if safe[column].dtype == object:
            kinds = {type(v) for v in safe[column].dropna()}
            if len(kinds) > 1:
                safe[column] = safe[column].map(lambda v: v if v is None or v != v else str(v))
    safe.to_parquet(parquet, index=False)
    written.append(parquet)
    return written


def collected_table(folder: Path) -> Path | None:
    """The table of a collected results folder (such as results/baseline): results.parquet or results.csv."""
    for name in ("results.parquet", "results.csv"):
        if (folder / name).is_file() and (name != "results.parquet" or _has_pyarrow()):
            return folder / name
    return None


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def load_frame(source: str | Path) -> pd.DataFrame:
    """A long frame from a results tree (collected now), a collected folder (holding results.csv, such as
    results/baseline), a `results.csv` or a `results.parquet`."""
    source = Path(source)
    if not source.exists():
        raise UsageError(f"results not found: {source} (a results folder, a results.csv or a results.parquet)")
    if source.is_dir():
        table = collected_table(source)
        if table is None:
            collection = collect(source)
            broken = [p for p in collection.problems if p.state == "broken"]
            if broken:  # finished but unreadable: comparing without it would silently drop a seed
                more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
                raise UsageError(
                    f"{source / broken[0].path}{more} is finished but its results are unreadable ({broken[0].reason}): "
                    "rerun it (delete its DONE marker to resume from its checkpoint) or move it out of the folder"
                )
            return collection.frame
        source = table
    if source.suffix == ".parquet":
        frame = pd.read_parquet(source)
    elif source.suffix == ".csv":
        frame = pd.read_csv(source)
    else:
        raise UsageError(f"{source}: expected a results folder, a .csv or a .parquet file")
    missing = [c for c in ("layer", "metric", "k", "value", "seed") if c not in frame.columns]
    if missing:
        raise UsageError(f"{source} is not a collected results table (missing columns: {', '.join(missing)})")
    frame["k"] = frame["k"].astype("Int64")
    return frame


def save_hits(frame: pd.DataFrame, root: Path, out_dir: Path) -> Path | None:
    """One `query_hits.npz` for a collected folder, so `compare` can count query noise without the run
    folders: per run `<run_id>.<layer>` (bits packed) with `<run_id>.<layer>.count`, and `<run_id>.queries`,
    the number k of its query set, stored once for all the runs that share it as `queries<k>.positions` and
    `queries<k>.classes` (older files hold `<run_id>.positions` per run; `load_hits` reads both)."""
    hits = {}
    for run, rel in frame[["run_id", "path"]].drop_duplicates().itertuples(index=False):
        found = load_query_hits(root / str(rel))
        if found is not None:
            hits[str(run)] = found
    return pack_hits(hits, out_dir)


def pack_hits(hits: Mapping[str, Mapping[str, np.ndarray]], out_dir: Path) -> Path | None:
    """Write run_id -> query hits (as `load_hits` returns them) into `out_dir`'s query_hits.npz (see
    `save_hits`); None when there are none."""
    arrays: dict[str, np.ndarray] = {}
    query_sets: list[dict[str, np.ndarray]] = []
    for run, hits_of_run in hits.items():
        queries = {key: hits_of_run[key] for key in QUERY_KEYS if key in hits_of_run}
        k = next((i for i, seen in enumerate(query_sets) if _same_arrays(seen, queries)), len(query_sets))
        if k == len(query_sets):
            query_sets.append(queries)
            arrays |= {f"queries{k}.{key}": values for key, values in queries.items()}
        arrays[f"{run}.queries"] = np.asarray(k)
        for key, values in hits_of_run.items():
            if key not in QUERY_KEYS:
                arrays[f"{run}.{key}"] = np.packbits(values.astype(bool))
                arrays[f"{run}.{key}.count"] = np.asarray(len(values))
    if not arrays:
        return None
    path = out_dir / rundir.QUERY_HITS
    rundir.atomic_write_npz(path, arrays)
    return path


def _same_arrays(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)


def load_hits(source: str | Path, frame: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """run_id -> {"positions", "classes", <layer>: hits} for the runs of `frame` that saved them: read from
    the run folders of a results tree, or from the query_hits.npz that `collect` wrote beside results.csv."""
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    table = collected_table(folder) if folder.is_dir() else None
    out: dict[str, dict[str, np.ndarray]] = {}
    if source.is_dir() and table is None:
        for run, rel in frame[["run_id", "path"]].drop_duplicates().itertuples(index=False):
            hits = load_query_hits(source / str(rel), strict=True)
            if hits is not None:
                out[str(run)] = hits
        return out
    packed = folder / rundir.QUERY_HITS
    if not packed.is_file():
        return out
    try:
        return _unpack_hits(read_hits_file(packed))
    except (ValueError, KeyError, IndexError) as err:
        raise UsageError(f"{packed}: unreadable query hits ({err}); collect the results again") from err


def _unpack_hits(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The runs' hits from `save_hits`'s packed arrays."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, values in arrays.items():
        run, _, rest = key.partition(".")
        if run.startswith("queries") or rest.endswith(".count"):
            continue
        entry = out.setdefault(run, {})
        if rest == "queries":
            entry |= {name: arrays[f"queries{int(values)}.{name}"] for name in QUERY_KEYS if f"queries{int(values)}.{name}" in arrays}
        elif rest in QUERY_KEYS:
            entry[rest] = values
        else:
            entry[rest] = np.unpackbits(values)[: int(arrays[f"{key}.count"])]
    return out


def collect_history(run_dirs: Iterable[Path], extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per-epoch rows of the given runs: run_id, seed, config keys, epoch, loss, lr, time_s, val:<metric>."""
    rows: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        try:
            config = load_yaml((run_dir / rundir.CONFIG).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        try:
            _, keys = run_keys(run_dir, config, extra_keys)
        except (OSError, ValueError):
            continue
        for entry in rundir.read_history(run_dir):
            row = {"run_id": run_dir.name, "name": config.get("name"), "seed": config.get("seed"), **keys}
            for name in ("epoch", "loss", "lr", "time_s"):
                row[name] = entry.get(name)
            for metric, value in (entry.get("val") or {}).items():
                if (
                    metric not in COUNT_KEYS
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                ):
                    row[f"val:{metric}"] = float(value)  # no dot: dotted columns are config keys
            rows.append(row)
    return pd.DataFrame(rows)


def iter_embedding_samples(run_dirs: Iterable[Path]) -> Iterator[Path]:
    for run_dir in run_dirs:
        path = Path(run_dir) / rundir.EMBEDDINGS_SAMPLE
        if path.is_file():
            yield path


def format_problems(problems: Sequence[RunProblem]) -> str:
    """One line per run kept out of the tables, so nothing disappears silently."""
    if not problems:
        return "all run folders are finished"
    lines = [f"{len(problems)} run folder(s) not collected:"]
    lines += [f"  {p.state:8s} {p.path}: {p.reason}" for p in problems]
    return "\n".join(lines)
