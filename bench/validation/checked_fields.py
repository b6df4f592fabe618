"""The key a sweep memoises the registry-name check (`check_names`) on: two configs equal on every
field it reads pass or fail it alike.

>>> from dmlbench.config import Config
>>> a, b = Config(), Config()
>>> b.loss.name = "sbdl"
>>> checked_values_key(a) == checked_values_key(b)
False
"""

from __future__ import annotations

import json
from typing import Any

from dmlbench.config import Config
from dmlbench.config.keys import NAME_CHECKED_KEYS

# The registry-name check (`check_names`) reads exactly these fields; enumerated values are checked
# earlier, when each cell's config is read. One list, in dmlbench.config.keys.
CHECKED_FIELDS: tuple[str, ...] = NAME_CHECKED_KEYS


def checked_value(cfg: Config, field: str) -> Any:
    """The value of one dotted field of a Config."""
    node: Any = cfg
    for part in field.split("."):
        node = getattr(node, part)
    return node


def checked_values_key(cfg: Config) -> str:
    """The values of CHECKED_FIELDS as one string (the memo key of a sweep's validation)."""
    return json.dumps({f: checked_value(cfg, f) for f in CHECKED_FIELDS}, sort_keys=True, default=str)
