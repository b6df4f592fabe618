"""Shared fixtures: a tiny synthshop dataset generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

# tests/plugins/ holds plugin modules that tests import by name (`--plugin plugins.example_losses`).
collect_ignore = ["plugins"]


@pytest.fixture(scope="session")
def tiny_synthshop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.datasets.synthshop import generate_synthshop

    out = tmp_path_factory.mktemp("data") / "synthshop-tiny"
    generate_synthshop(out, "tiny", seed=0, progress=False)
    return out
