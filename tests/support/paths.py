"""Paths the tests share: the repository, tests/ (what cell subprocesses need on PYTHONPATH) and the
real sample files."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def _find_shared_data() -> Path:
    """The real sample files: shared/data beside the checkout, or beside a folder holding several worktrees."""
    for folder in REPO.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return REPO.parent / "shared" / "data"  # absent: the real-file tests skip


SHARED_DATA = _find_shared_data()


def tests_env(**extra: str) -> dict[str, str]:
    """os.environ with tests/ first on PYTHONPATH (a subprocess then imports `support.*`), plus `extra`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **extra}
