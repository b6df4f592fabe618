"""Every docstring example in the installed `dmlbench` package runs (imported as users import it)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


def _modules() -> list[str]:
    # losses/ and samplers/ live beside bench/ in the repository, so walk each installed package root.
    import dmlbench.losses
    import dmlbench.samplers

    names = {"dmlbench", "dmlbench.losses", "dmlbench.samplers"}
    for pkg in (dmlbench, dmlbench.losses, dmlbench.samplers):
        names |= {m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")}
    return sorted(names)


MODULES = _modules()


def test_every_package_folder_is_walked() -> None:
    assert {"dmlbench.losses", "dmlbench.samplers", "dmlbench.sweep"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_doctests_exist() -> None:
    # The metric functions carry their examples; a walk that finds none has lost them.
    found = sum(len(doctest.DocTestFinder().find(importlib.import_module(n))) for n in MODULES)
    assert found >= 10
