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
from pathlib import Path
from typing import Any, Generic, TypeVar

from dmlbench.errors import (
    ConfigError,
    MissingModuleError,
    UnknownNameError,
    did_you_mean,
    unknown_name,
)

__all__ = [
    "HARNESS_ARGS", "LOSS_HARNESS_ARGS", "PLUGIN_HINT", "Registry", "import_plugins", "init_parameter_names", "param_type_problem",
    "signature_params",
]

T = TypeVar("T")

_REQUIRED = "<required>"


def defining_file(obj: object) -> str | None:
    """The resolved path of the file that defines `obj` (a class or function), or None."""
    try:
        source = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        return None
    return str(Path(source).resolve()) if source else None


class Registry(Generic[T]):
    """Name -> class or factory. Entries register themselves with `@REGISTRY.register(name)`.
    `unknown_hint` ends the message for an unknown name (e.g. how to load a plugin that defines it)."""

    def __init__(self, kind: str, unknown_hint: str = "") -> None:
        self.kind = kind
        self.unknown_hint = unknown_hint
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                # Re-importing the same module (a plugin loaded twice, or one file imported under two
                # names, `plugins.mylosses` and `mylosses`) re-registers an equal qualified name from the
                # same file; anything else is a genuine clash the user must resolve.
                same = getattr(existing, "__qualname__", None) == getattr(obj, "__qualname__", None) and (
                    getattr(existing, "__module__", None) == getattr(obj, "__module__", None)
                    or defining_file(existing) == defining_file(obj) is not None
                )
                if not same:
                    raise ValueError(f"{self.kind} '{name}' is already registered by {existing!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            hint = f". {self.unknown_hint}" if self.unknown_hint else ""
            raise UnknownNameError(unknown_name(self.kind, name, self._entries) + hint) from None

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
        entry = self.get(name)
        valid = signature_params(entry)
        for key in params:
            if key in HARNESS_ARGS and key in init_parameter_names(entry):
                raise ConfigError(
                    f"{self.kind} '{name}': '{key}' is given by the harness ({HARNESS_ARGS[key]}); "
                    f"remove it from the {self.kind}'s params"
                )
            if key not in valid:
                raise ConfigError(
                    f"{self.kind} '{name}' has no parameter '{key}'{did_you_mean(key, valid) or ';'} "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
        missing = [k for k, v in valid.items() if v == _REQUIRED and k not in params]
        if missing:
            raise ConfigError(f"{self.kind} '{name}' needs parameter(s): {', '.join(missing)}")
        for key, value in params.items():
            problem = param_type_problem(entry, key, value)
            if problem:
                raise ConfigError(f"{self.kind} '{name}' parameter '{key}' {problem}; fix {self.kind}.params.{key}")


# What the harness hands a loss whose __init__ names it (never a config param; dmlbench.losses.build),
# with what it is. train.parts.loss_harness computes the values.
LOSS_HARNESS_ARGS: dict[str, str] = {
    "num_classes": "the number of training classes; the loss sees labels 0..num_classes-1",
    "embedding_size": "model.emb_dim",
    "num_attributes": "the dataset's attribute count (0 when it has none)",
}

# Parameters an entry receives from the harness rather than from the user's config (never config
# params), with what the harness gives.
HARNESS_ARGS: dict[str, str] = {
    "self": "the object itself",
    "labels": "the training labels",
    "seed": "the run's seed",
    "groups": "the dataset's groups",
    "root": "data.root",
    "dataset": "the dataset",
    "val_classes": "data.val_classes",
    "subset": "data.subset",
    "batches_per_epoch": "sampler.batches_per_epoch",
    **LOSS_HARNESS_ARGS,
}


def init_parameter_names(obj: Any) -> set[str]:
    """Every named parameter of a class's __init__ (or a factory), harness ones included."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    return {p.name for p in inspect.signature(target).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def signature_params(obj: Any) -> dict[str, Any]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    out: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.name in HARNESS_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = _REQUIRED if p.default is inspect.Parameter.empty else p.default
    return out


_SCALAR_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


def _declared_type(obj: Any, key: str) -> type | None:
    """The scalar type a parameter takes: its default's type, else its annotation (`float`, `int | None`, ...)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    param = inspect.signature(target).parameters.get(key)
    if param is None:
        return None
    if param.default is not inspect.Parameter.empty and param.default is not None:
        return type(param.default) if type(param.default) in _SCALAR_TYPES.values() else None
    annotation = param.annotation
    if isinstance(annotation, type):
        return annotation if annotation in _SCALAR_TYPES.values() else None
    if isinstance(annotation, str):  # `from __future__ import annotations`: "float", "float | None"
        names = {part.strip() for part in annotation.split("|")} - {"None"}
        if len(names) == 1 and next(iter(names)) in _SCALAR_TYPES:
            return _SCALAR_TYPES[next(iter(names))]
    return None


def param_type_problem(obj: Any, key: str, value: Any) -> str | None:
    """Why `value` cannot be parameter `key` of `obj` (read off its default or annotation), else None.

    >>> def f(alpha: float = 2.0, name: str = "x", steps=3): ...
    >>> param_type_problem(f, "alpha", "abc"), param_type_problem(f, "alpha", 3), param_type_problem(f, "steps", 1.5)
    ("must be a number, got 'abc'", None, 'must be an integer, got 1.5')
    """
    expected = _declared_type(obj, key)
    if expected is None or value is None:
        return None
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"must be a number, got {value!r}"
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be an integer, got {value!r}"
    if expected is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    return None if isinstance(value, str) else f"must be a string, got {value!r}"


PLUGIN_HINT = (
    "If it is defined in a plugin module, load that module: `dmlbench --plugin MODULE ...` "
    "or `plugins: [MODULE]` in the config"
)


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules whose `@register` decorators add losses, samplers, ... to the registries."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
                raise MissingModuleError(f"plugin module '{module}' imports a module that is missing: {err}") from err
            raise MissingModuleError(
                f"could not import plugin module '{module}': {err}. The `dmlbench` command does not look in the "
                "current directory: install the module (pip install -e), or add its folder to PYTHONPATH "
                f"(e.g. `PYTHONPATH=. dmlbench --plugin {module} ...`; SLURM and local jobs inherit it)"
            ) from err
        except Exception as err:  # a syntax error or a failing import-time statement in the user's file
            raise MissingModuleError(
                f"plugin module '{module}' failed while being imported: {type(err).__name__}: {err}; fix the module"
            ) from err
