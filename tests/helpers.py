"""Kept for tests written against the old layout (`from helpers import ...`): the shared helpers live in
the `support` package now (tests/support/); import from there in new tests."""

from support.cli import run_cli, run_main
from support.configs import tiny_run_config, write_config
from support.paths import REPO, SHARED_DATA

__all__ = ["REPO", "SHARED_DATA", "run_cli", "run_main", "tiny_run_config", "write_config"]
