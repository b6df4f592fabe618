"""The real `dmlbench` CLI: in a subprocess (`run_cli`) when the test is about the process (exit codes
of the installed command, signals, a fresh interpreter), else in-process (`run_main`): the same
`dmlbench.cli.main` the script calls, without a torch import per call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dmlbench.cli import main
from support.paths import REPO, tests_env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `dmlbench` CLI in a subprocess (same interpreter as the tests)."""
    return subprocess.run(
        [sys.executable, "-m", "dmlbench", *args],
        capture_output=True,
        text=True,
        env=tests_env(**(env or {})),
        timeout=timeout,
        cwd=cwd or REPO,
    )


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`dmlbench.cli.main(argv)` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
