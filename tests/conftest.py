"""Shared fixtures: a tiny synthshop dataset generated once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# support.slurm: the `slurm_cluster` fixture (skips, or fails under DMLBENCH_REQUIRE_SLURM=1, without a cluster)
pytest_plugins = ["support.slurm"]

# tests/plugins/ holds plugin modules that tests import by name (`--plugin plugins.example_losses`).
collect_ignore = ["plugins"]


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches (e.g. the image-scan cache) go to a per-session folder, never into the user's home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMLBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("dmlbench-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_synthshop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dmlbench.data.synthshop import generate_synthshop

    out = tmp_path_factory.mktemp("data") / "synthshop-tiny"
    generate_synthshop(out, "tiny", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_synthshop_galleries(tiny_synthshop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny synthshop whose manifest scores the test items in galleries of 5 (5 galleries, as `large`
    scores its in galleries of 320): every query is ranked against its own gallery only."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("data") / "synthshop-tiny-galleries"
    shutil.copytree(tiny_synthshop, out)
    manifest = json.loads((out / "synthshop.json").read_text())
    manifest["preset"]["items_per_gallery"] = 5
    (out / "synthshop.json").write_text(json.dumps(manifest))
    return out
