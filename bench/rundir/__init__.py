"""The run folder: the only thing a run writes and the only thing `collect` reads.

Layout of ``<output_dir>/<run_id>/``::

    config.yaml      the full resolved config (written first)
    code.json        where plugin code the run uses came from (file sha256 or package version; dmlbench.plugins)
    cell.json        {"sweep": name, "grid": {dotted key: value}} when the run is a sweep cell
    history.jsonl    one JSON object per finished epoch (loss, lr, stats, sampler log, val metrics)
    checkpoint.pt    model/optimizer/scheduler/sampler/RNG state of the last completed step
    checkpoint.prev.pt   the checkpoint before it, kept until the next one is written and verified
    checkpoint.json  size and sha256 of both checkpoints (dmlbench.train.checkpoint)
    model.pt         the trained model's weights (kept after DONE with train.keep=weights)
    lease.json       the trainer holding the folder, while it trains (dmlbench.rundir.lease)
    metrics.json     {"run_id", "dataset", "protocol", "epoch", "layers": {layer: {metric: value}}}
    run.log          human-readable log (data problems, skipped images, timings)
    error.txt        summary line + traceback of the last failure (removed when a later attempt succeeds)
    embeddings_sample.npz  a sample of evaluation embeddings and labels, for the embedding plots
    tracker.json     ids of the experiment-tracker runs mirroring this run (`dmlbench.track`), so a resumed
                     run continues the same tracker runs
    query_hits.npz   per scored query: its dataset position and its Recall@1 hit per layer (for `compare`)
    DONE             written last, atomically: a run is finished only when this marker exists

Every write is atomic (temp file + fsync + rename), so a killed job never leaves a half-written
file, and a folder with DONE is never written to again.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "config.yaml"
CELL = "cell.json"
CODE = "code.json"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_PREVIOUS = "checkpoint.prev.pt"
CHECKPOINT_MANIFEST = "checkpoint.json"
WEIGHTS = "model.pt"
METRICS = "metrics.json"
LOG = "run.log"
ERROR = "error.txt"
EMBEDDINGS_SAMPLE = "embeddings_sample.npz"
TRACKER = "tracker.json"
QUERY_HITS = "query_hits.npz"
ENVIRONMENT = "environment.json"  # the run's environment fingerprint (dmlbench.train.environment)
DONE = "DONE"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Named arrays as one compressed .npz, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwargs
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def mark_done(run_dir: Path, info: dict[str, Any]) -> None:
    """Write the DONE marker last; the run is finished from this instant on."""
    (Path(run_dir) / ERROR).unlink(missing_ok=True)
    atomic_write_json(Path(run_dir) / DONE, {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """History rows; a truncated last line (killed mid-write) is ignored."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite history atomically (rows of epochs after the resumed checkpoint are dropped)."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    atomic_write_text(Path(run_dir) / HISTORY, text)


def append_log(run_dir: Path, line: str) -> None:
    with open(Path(run_dir) / LOG, "a") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def run_state(run_dir: Path, names: set[str] | None = None) -> str:
    """done | failed | started | empty, read from the folder alone (no scheduler involved).

    `names`: the folder's entries when the caller has listed it already (saves a stat per file).
    """
    if names is None:
        run_dir = Path(run_dir)
        names = {name for name in (DONE, ERROR, CONFIG) if (run_dir / name).is_file()}
    if DONE in names:
        return "done"
    if ERROR in names:
        return "failed"
    if CONFIG in names:
        return "started"
    return "empty"


def error_summary(run_dir: Path) -> str:
    """The one line saying why a run failed: the summary line a failed run writes first in error.txt,
    or the last line of a bare traceback."""
    try:
        text = (Path(run_dir) / ERROR).read_text(errors="replace")
    except OSError as err:
        return f"unreadable {ERROR}: {err}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return f"(empty {ERROR})"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]
