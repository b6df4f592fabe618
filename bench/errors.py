"""Every user-facing error of dmlbench, and the one "did you mean" formatter.

An error the user can act on is a `DmlbenchError`: the command line prints its message as one line
(no traceback) and exits with its `exit_code`: 2 for input the user must fix, 1 for a run that stopped.
Each class also keeps the builtin base it had before (ValueError, FileNotFoundError, ...), so existing
`except` clauses keep catching it.

>>> unknown_name("loss", "bld", ["bdl", "sbdl", "triplet"])
"unknown loss 'bld'; did you mean 'bdl'? Known: bdl, sbdl, triplet"
>>> str(UnknownNameError("unknown loss 'x'"))
"unknown loss 'x'"
>>> isinstance(ConfigError("x"), ValueError), ConfigError.exit_code, NonFiniteLossError.exit_code
(True, 2, 1)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

USAGE = 2  # exit status: bad input the user must fix
STOPPED = 1  # exit status: the run started and stopped (nothing wrong was written)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name`, or None when nothing is reasonably close; on a tie the one
    listed first (difflib.get_close_matches would pick the alphabetically last).

    >>> closest("faisss", ["auto", "torch", "faiss-cpu", "faiss-gpu"]), closest("xyz", ["adam"])
    ('faiss-cpu', None)
    """
    best, best_score = None, 0.0
    matcher = difflib.SequenceMatcher(b=str(name))
    for candidate in candidates:
        matcher.set_seq1(str(candidate))
        if matcher.real_quick_ratio() < 0.5 or matcher.quick_ratio() < 0.5:
            continue
        score = matcher.ratio()
        if score >= 0.5 and score > best_score:
            best, best_score = str(candidate), score
    return best


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """`; did you mean '<prefix><closest>'?`, or "" when nothing is close."""
    hint = closest(name, candidates)
    return f"; did you mean '{prefix}{hint}'?" if hint else ""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> str:
    """The message for a name that is not one of `known`, naming the closest one."""
    known = sorted(str(k) for k in known)
    return f"unknown {kind} '{name}'{did_you_mean(str(name), known)} Known: {', '.join(known)}"


def unknown_value(key: str, value: object, allowed: Iterable[str]) -> str:
    """The message for a config value that is not one of `allowed` (listed in their declared order).

    >>> unknown_value("eval.backend", "faisss", ["auto", "torch", "faiss-cpu", "faiss-gpu"])
    "eval.backend must be one of auto, torch, faiss-cpu, faiss-gpu, not 'faisss'; did you mean 'faiss-cpu'?"
    """
    allowed = [str(a) for a in allowed]
    return f"{key} must be one of {', '.join(allowed)}, not '{value}'{did_you_mean(str(value), allowed)}"


def yaml_problem(err: Exception) -> str:
    """A YAML parse error as one line: where and what (PyYAML's own text spans several lines).

    >>> import yaml
    >>> try:
    ...     yaml.safe_load("a: [1, 2")
    ... except yaml.YAMLError as err:
    ...     print(yaml_problem(err))
    line 1, column 9: expected ',' or ']', but got '<stream end>'
    """
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


class DmlbenchError(Exception):
    """An error the user can act on: printed as one line, the process exits with `exit_code`."""

    exit_code: int = USAGE
    label: str = "error"  # printed as `dmlbench: <label>: <message>`


class ConfigError(DmlbenchError, ValueError):
    """A config that cannot run: raised before any work starts."""


class DatasetError(DmlbenchError, ValueError):
    """A dataset folder that cannot be read as the named dataset."""


class SweepError(DmlbenchError, ValueError):
    """A sweep file, preset or sweep folder that cannot be used."""


class TuneError(DmlbenchError, ValueError):
    """A tuning spec (`dmlbench tune`) or tune folder that cannot be used; raised before anything is submitted."""


class TableSpecError(DmlbenchError, ValueError):
    """A table spec (tables.yaml) that cannot be built."""


class UsageError(DmlbenchError, ValueError):
    """A command-line argument that cannot be used (e.g. a folder that does not exist)."""


class UnknownNameError(DmlbenchError, KeyError):
    """A registry lookup of a name nobody registered. Its str() is the message itself (KeyError's
    would be the quoted repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingModuleError(DmlbenchError, ImportError):
    """A `--plugin` / `plugins:` module or an optional dependency that cannot be imported."""


class WeightsMissingError(DmlbenchError, FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (runs never download)."""


class BrokenResultError(DmlbenchError, ValueError):
    """A finished run whose result cannot be used (a NaN or missing metric): named, never passed over."""

    exit_code = STOPPED
    label = "broken result"


class NonFiniteLossError(DmlbenchError, FloatingPointError):
    """The loss or the gradient norm became NaN/inf: the run stops instead of writing garbage."""

    exit_code = STOPPED
    label = "run stopped"
