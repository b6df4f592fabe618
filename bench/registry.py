"""Plain decorator registries: losses, samplers, datasets, backbones.

>>> THINGS = Registry("thing")
>>> @THINGS.register("double")
... def double(x: int, scale: int = 2) -> int:
...     return x * scale
>>> THINGS.get("double")(3)
6
>>> THINGS.get("dubble")
Traceback (most recent call last):
...
dmlbench.errors.UnknownNameError: unknown thing 'dubble'; did you mean 'double'? Known: double
>>> THINGS.params("double")
{'x': '<required>', 'scale': 2}
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from dmlbench.errors import (
    ConfigError,
    MissingModuleError,
    UnknownNameError,
    did_you_mean,
    unknown_name,
)

__all__ = ["HARNESS_ARGS", "Registry", "import_plugins", "signature_params"]

T = TypeVar("T")

_REQUIRED = "<required>"


class Registry(Generic[T]):
    """Name -> class or factory. Entries register themselves with `@REGISTRY.register(name)`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                # Re-importing the same module (e.g. a plugin loaded twice) re-registers an equal
                # qualified name; anything else is a genuine clash the user must resolve.
                same = getattr(existing, "__qualname__", None) == getattr(obj, "__qualname__", None) and getattr(
                    existing, "__module__", None
                ) == getattr(obj, "__module__", None)
                if not same:
                    raise ValueError(f"{self.kind} '{name}' is already registered by {existing!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name(self.kind, name, self._entries)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def params(self, name: str) -> dict[str, Any]:
        """Keyword parameters of an entry with their defaults (`<required>` when there is none)."""
        return signature_params(self.get(name))

    def check_params(self, name: str, params: dict[str, Any]) -> None:
        """Raise ConfigError (a ValueError) for a parameter the entry does not take, naming the closest
        valid one; UnknownNameError (a KeyError) for an unknown `name`."""
        valid = signature_params(self.get(name))
        for key in params:
            if key not in valid:
                raise ConfigError(
                    f"{self.kind} '{name}' has no parameter '{key}'{did_you_mean(key, valid) or ';'} "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
        missing = [k for k, v in valid.items() if v == _REQUIRED and k not in params]
        if missing:
            raise ConfigError(f"{self.kind} '{name}' needs parameter(s): {', '.join(missing)}")


# Parameters every entry of a kind receives from the harness rather than from the user's config.
HARNESS_ARGS = {
    "self", "labels", "seed", "groups", "root", "num_attributes", "dataset",
    "val_classes", "subset", "batches_per_epoch",
}


def signature_params(obj: Any) -> dict[str, Any]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    out: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.name in HARNESS_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = _REQUIRED if p.default is inspect.Parameter.empty else p.default
    return out


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules whose `@register` decorators add losses, samplers, ... to the registries."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingModuleError(
                f"could not import plugin module '{module}': {err}. Make sure it is importable "
                "(installed, or its folder is on PYTHONPATH / the current directory)."
            ) from err
