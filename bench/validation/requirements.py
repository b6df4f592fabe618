"""What each cell of a sweep needs from this machine, checked before anything is submitted: the optional
extras its backbone, kNN backend and trackers import, its pretrained weights on disk and (with `data`) its
dataset's annotation files (never an image).

A problem shared by many cells (a missing extra, the regression preset's weights, one dataset root) is one
`Problem` with the cells it concerns, so `sweep` prints it once with its count instead of once per cell.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from dmlbench.config import Config
from dmlbench.errors import DmlbenchError
from dmlbench.extras import EXTRAS, install_hint, missing_modules


@dataclass
class Problem:
    message: str  # one line: what is missing and how to get it
    fatal: bool = True  # False: the runs work without it (a tracker that is not installed is skipped)
    run_ids: list[str] = field(default_factory=list)  # the cells it concerns


def _weights_and_extras(cfg: Config) -> list[Problem]:
    from dmlbench.model import check_weights

    problems: list[Problem] = []
    try:  # the backbone's packages (efficientnet_lite0, timm), then its weights file when pretrained
        check_weights(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights_path)
    except (DmlbenchError, FileNotFoundError, ImportError) as err:
        problems.append(Problem(str(err)))
    if cfg.eval.backend in ("faiss-cpu", "faiss-gpu") and missing_modules("faiss-cpu"):
        problems.append(Problem(f"eval.backend={cfg.eval.backend} needs the module faiss, which is not installed: "
                                f"{install_hint(cfg.eval.backend)}"))
    for tracker in cfg.track.trackers:
        if tracker in EXTRAS and missing_modules(tracker):
            problems.append(Problem(f"tracker {tracker} is not installed: runs train without it ({install_hint(tracker)})",
                                    fatal=False))
    return problems


def _data(cfg: Config) -> list[Problem]:
    from dmlbench.validation.preflight import load_index

    try:
        load_index(cfg)  # the annotation files only: no image is opened
    except (DmlbenchError, OSError, ValueError) as err:
        where = f" (data.root={cfg.data.root})" if cfg.data.root not in str(err) else ""
        return [Problem(f"dataset {cfg.data.dataset}: {str(err).strip(chr(34))}{where}")]
    return []


def _key(cfg: Config, *parts: object) -> str:
    return json.dumps([cfg.model.backbone, cfg.model.pretrained, cfg.model.weights_path, cfg.eval.backend,
                       cfg.track.trackers, *parts], sort_keys=True, default=str)


def cell_problems(cells: Sequence[tuple[str, Config]], *, data: bool = True) -> list[Problem]:
    """The problems of (run_id, config) cells, each once with the run_ids it concerns (in cell order).
    Each check runs once per distinct value of the fields it reads."""
    found: dict[str, Problem] = {}
    memo: dict[str, list[Problem]] = {}
    for run_id, cfg in cells:
        key = _key(cfg)
        if key not in memo:
            memo[key] = _weights_and_extras(cfg)
        problems = memo[key]
        if data:
            # the seed picks a subset or folds; without those the index is the same for every seed
            seeded = cfg.data.subset or cfg.data.val_classes or cfg.data.folds
            data_key = json.dumps([cfg.data.__dict__, cfg.seed if seeded else None], sort_keys=True, default=str)
            if data_key not in memo:
                memo[data_key] = _data(cfg)
            problems = [*problems, *memo[data_key]]
        for problem in problems:
            found.setdefault(problem.message, Problem(problem.message, problem.fatal)).run_ids.append(run_id)
    return list(found.values())


def format_problems(problems: Sequence[Problem], total: int) -> list[str]:
    """One line per problem: `error (N of M cells): message`, notes after errors."""
    lines = []
    for problem in sorted(problems, key=lambda p: not p.fatal):
        count = len(problem.run_ids)
        cells = f"all {total} cells" if count == total else f"{count} of {total} cells, e.g. {problem.run_ids[0]}"
        lines.append(f"{'error' if problem.fatal else 'note'} ({cells}): {problem.message}")
    return lines
