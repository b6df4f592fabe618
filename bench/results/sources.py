"""Results sources named on the command line (`collect`, `plot`, `compare`), and several of them read as one.

A source is a results tree (a sweep's folder of run folders), a collected folder (holding results.csv, such
as `results/baseline`), a results.csv / results.parquet, or a tune folder (its final stage). A relative name
that is not a local path (`results/baseline` from the user's own folder) is looked up in the dmlbench source
checkout this package is installed from (an editable install); a wheel does not ship the committed results,
and the error says where they are.

Several sources become one `Collection`: each row gets the config column `results.source` (the source as
named), so runs from different sources are never averaged into one cell: a table shows each source's rows
side by side, a plot one line per source and method. A run met twice (the same run_id) is counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmlbench.errors import UsageError
from dmlbench.results.collect import (
    Collection,
    RunProblem,
    collect,
    collected_table,
    load_frame,
    load_hits,
    to_frame,
)

SOURCE_KEY = "results.source"  # a dotted column: a config key to tables and plots


def repository_root() -> Path | None:
    """The source checkout this package runs from (an editable install or a clone on PYTHONPATH), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "results").is_dir() else None


def resolve_source(source: str | Path, kind: str = "results", hint: str = "") -> Path:
    """`source` when it exists here, else the same relative path in the dmlbench checkout; a UsageError
    (one line: `<kind> not found: ...`, then `hint`) saying where to find it otherwise."""
    path = Path(source)
    if path.exists():
        return path
    root = repository_root()
    if not path.is_absolute() and root is not None and (root / path).exists():
        return root / path
    where = (
        f"nor in the dmlbench checkout {root}"
        if root is not None
        else "and this dmlbench is installed without its repository (a wheel)"
    )
    raise UsageError(
        f"{kind} not found: {source} is not a local path {where}; {hint}the committed results (results/baseline, "
        "results/quickstart, ...) are folders of the dmlbench repository: pass their path in a clone, or "
        "install from a clone with `pip install -e .`"
    )


def _final_stage(path: Path) -> Path:
    from dmlbench.tune import is_tune_dir

    return path / "final" if is_tune_dir(path) else path


def read_source(source: str | Path) -> Collection:
    """One source as a Collection: run folders collected now, or a collected table (hits read with it)."""
    path = _final_stage(resolve_source(source))
    if path.is_dir() and collected_table(path) is None:
        return collect(path)
    frame = load_frame(path)
    return Collection(root=path if path.is_dir() else path.parent, frame=frame, hits=load_hits(path, frame))


def collect_sources(sources: Sequence[str | Path]) -> Collection:
    """One Collection of every source; a single one is read as it is (no `results.source` column)."""
    if len(sources) == 1:
        return read_source(sources[0])
    frames: list[pd.DataFrame] = []
    finished: list[Path] = []
    problems: list[RunProblem] = []
    hits: dict[str, dict[str, np.ndarray]] = {}
    seen: dict[str, str] = {}  # run_id -> the source it was read from
    for source in sources:
        part = read_source(source)
        label = str(source)
        root = part.root.resolve()
        frame = part.frame.copy()
        # absolute paths: the run folders of every source stay findable (embedding samples, training curves)
        frame["path"] = [str(root / str(rel)) for rel in frame["path"]]
        again = frame["run_id"].astype(str).isin(list(seen))
        dropped = set(frame.loc[again, "run_id"].astype(str))
        problems += [RunProblem(run, label, "duplicate", f"also in {seen[run]}: counted once") for run in sorted(dropped)]
        frame = frame[~again].copy()
        frame[SOURCE_KEY] = label
        kept = set(frame["run_id"].astype(str))
        seen |= dict.fromkeys(kept, label)
        frames.append(frame)
        finished += [p.resolve() for p in part.finished if p.name not in dropped]
        problems += [RunProblem(p.run_id, f"{label}: {p.path}", p.state, p.reason) for p in part.problems]
        hits |= {run: h for run, h in part.query_hits().items() if run in kept}
    rows = pd.concat(frames, ignore_index=True).to_dict("records") if frames else []
    return Collection(root=Path("/"), frame=to_frame(rows), finished=finished, problems=problems, hits=hits)
