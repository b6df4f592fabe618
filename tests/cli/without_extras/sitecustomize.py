"""Imported at interpreter start when this folder is on PYTHONPATH: the top-level modules named in
$DMLBENCH_HIDE_MODULES (comma-separated) cannot be found, as in a plain `pip install dmlbench` without
extras. Every meta-path finder is wrapped, so `importlib.util.find_spec` answers None and `import`
raises ModuleNotFoundError, exactly as for a module that is not installed."""

from __future__ import annotations

import os
import sys
from typing import Any

HIDDEN = {name for name in os.environ.get("DMLBENCH_HIDE_MODULES", "").split(",") if name}


class _Hidden:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


if HIDDEN:
    sys.meta_path[:] = [_Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
