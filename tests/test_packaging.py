"""One installed namespace: `dmlbench` and nothing else at the top of site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"dmlbench": REPO / "bench", "dmlbench.losses": REPO / "losses", "dmlbench.samplers": REPO / "samplers"}


def _declared() -> tuple[dict[str, str], list[str]]:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return tool["package-dir"], tool["packages"]


def _package_folders() -> set[str]:
    found = set()
    for name, root in PACKAGE_DIRS.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" not in rel:
                found.add(".".join((name, *rel)))
    return found


def test_every_package_folder_is_declared_under_dmlbench() -> None:
    package_dir, packages = _declared()
    assert package_dir == {k: v.name for k, v in PACKAGE_DIRS.items()}
    assert all(p == "dmlbench" or p.startswith("dmlbench.") for p in packages)
    assert sorted(packages) == sorted(_package_folders()), "add new package folders to pyproject.toml"


def test_users_own_losses_and_samplers_are_not_shadowed(tmp_path: Path) -> None:
    # A researcher's project with its own `losses.py` and `samplers/` package, run from its folder.
    (tmp_path / "losses.py").write_text("OWNER = 'user'\n")
    (tmp_path / "samplers").mkdir()
    (tmp_path / "samplers" / "__init__.py").write_text("OWNER = 'user'\n")
    code = (
        "import dmlbench.losses, dmlbench.samplers, losses, samplers\n"
        "assert losses.OWNER == samplers.OWNER == 'user'\n"
        "assert 'bdl' in dmlbench.losses.LOSSES.names() and 'batch-wise' in dmlbench.samplers.SAMPLERS.names()\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('bench') is None, 'bench must not be importable'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
