"""A sweep -> its cells: the grid's cartesian product, exclude and include rules, each cell's resolved
Config and run_id, and (with `validate`) every cell's names and enumerated values checked before any
work is submitted."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dmlbench.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, run_id
from dmlbench.config.keys import MISSING, get_dotted
from dmlbench.errors import did_you_mean
from dmlbench.sweep.spec import Sweep, SweepError
from dmlbench.validation.checked_fields import checked_values_key


@dataclass(frozen=True)
class Cell:
    grid: dict[str, Any]  # the cell's coordinates: dotted key -> value
    config: Config
    run_id: str


def _ordered(overrides: dict[str, Any]) -> dict[str, Any]:
    """`*.name` first: choosing another loss/sampler resets its params, which must not wipe the cell's own."""
    return dict(sorted(overrides.items(), key=lambda kv: not kv[0].endswith(".name")))


def describe_cell(grid: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in grid.items()) or "(base)"


def _check_rule_keys(sweep: Sweep, base_dict: dict[str, Any]) -> None:
    """An `exclude` key that names nothing would silently exclude nothing: a typo must fail."""
    for rule in sweep.exclude:
        for key in rule:
            if key in sweep.grid:
                continue
            if get_dotted(base_dict, key, default=MISSING) is MISSING:
                raise SweepError(
                    f"exclude rule key '{key}' is neither a grid key nor a config key{did_you_mean(key, sweep.grid)}"
                )


def _matches(rule: dict[str, Any], cell_values: dict[str, Any]) -> bool:
    return all(cell_values.get(k, object()) == v for k, v in rule.items())


def iter_grid(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Cartesian product in file order, the last key varying fastest.

    >>> list(iter_grid({"a": [1, 2], "b": ["x", "y"]}))
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def expand(sweep: Sweep, *, validate: bool = True) -> list[Cell]:
    """Every cell of the sweep, each with its resolved Config and run_id.

    With `validate`, every config's registry names and parameters are checked (dmlbench.train.check_names)
    before anything is submitted; the error names the cell. Cells that resolve to the same run
    (include duplicating a grid cell) are kept once.
    """
    try:
        base_cfg = config_from_dict(sweep.base)
    except ConfigError as err:
        raise SweepError(f"sweep '{sweep.name}' base config: {err}") from None
    base_cfg.output_dir = str(sweep.runs_dir.resolve())
    base_dict = config_to_dict(base_cfg)
    _check_rule_keys(sweep, base_dict)
    check = _name_checker() if validate else None

    cells: list[Cell] = []
    seen: dict[str, dict[str, Any]] = {}

    def add(overrides: dict[str, Any], from_grid: bool) -> None:
        try:
            cfg = apply_overrides(base_cfg, _ordered(overrides)) if overrides else copy.deepcopy(base_cfg)
            if check is not None:
                check(cfg)
        except (ConfigError, ValueError, KeyError) as err:
            raise SweepError(f"sweep '{sweep.name}', cell [{describe_cell(overrides)}]: {str(err).strip(chr(34))}") from None
        rid = run_id(cfg)
        if rid in seen:
            if from_grid and seen[rid] != overrides:
                raise SweepError(
                    f"sweep '{sweep.name}': cells [{describe_cell(seen[rid])}] and [{describe_cell(overrides)}] are the same run "
                    f"({rid}); they differ only in keys that do not change results (e.g. train.device)"
                )
            return
        seen[rid] = overrides
        coords = overrides
        if not from_grid:
            # include cells also get every grid coordinate, so result tables see uniform columns
            cfg_dict = config_to_dict(cfg)
            coords = {**{k: get_dotted(cfg_dict, k) for k in sweep.grid}, **overrides}
        cells.append(Cell(grid=coords, config=cfg, run_id=rid))

    for point in iter_grid(sweep.grid):
        if any(_matches(rule, _cell_values(point, base_dict, rule)) for rule in sweep.exclude):
            continue
        add(point, from_grid=True)
    for extra in sweep.include:
        add(extra, from_grid=False)
    if not cells:
        raise SweepError(f"sweep '{sweep.name}' has no cells: its exclude rules remove every grid cell; check exclude")
    return cells


def _cell_values(point: dict[str, Any], base_dict: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """The values a rule is compared against: the grid point, else the base config's value."""
    values = dict(point)
    for key in rule:
        if key not in values:
            values[key] = get_dotted(base_dict, key)
    return values


def _name_checker() -> Callable[[Config], None]:
    """dmlbench.train.check_names, memoised on the fields it reads: a 1,000-cell grid usually has a handful
    of distinct name sets."""
    from dmlbench.train import check_names  # imports torch: only when validating

    seen: set[str] = set()

    def check(cfg: Config) -> None:
        key = checked_values_key(cfg)
        if key not in seen:
            check_names(cfg)
            seen.add(key)

    return check
