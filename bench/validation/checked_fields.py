"""The config fields that the name and enumerated-value check (`check_names`) reads, in one list, and
the key a sweep memoises that check on: two configs equal on every field here pass or fail it alike.

>>> from dmlbench.config import Config
>>> a, b = Config(), Config()
>>> b.train.compile = "default"
>>> checked_values_key(a) == checked_values_key(b)
False
"""

from __future__ import annotations

import json
from typing import Any

from dmlbench.config import Config

# Every config field check_names reads (dotted paths into Config). A field checked there but missing
# here would let a sweep skip the check for a cell that differs only in that field.
CHECKED_FIELDS: tuple[str, ...] = (
    "plugins",
    "loss.name",
    "loss.params",
    "sampler.name",
    "sampler.params",
    "data.dataset",
    "data.options",
    "model.backbone",
    "train.optimizer",
    "train.lr_schedule",
    "train.amp",
    "train.compile",
    "eval.layers",
)


def checked_value(cfg: Config, field: str) -> Any:
    """The value of one dotted field of a Config."""
    node: Any = cfg
    for part in field.split("."):
        node = getattr(node, part)
    return node


def checked_values_key(cfg: Config) -> str:
    """The values of CHECKED_FIELDS as one string (the memo key of a sweep's validation)."""
    return json.dumps({f: checked_value(cfg, f) for f in CHECKED_FIELDS}, sort_keys=True, default=str)
