"""What `sweep` shows about each cell's loss and sampler parameters.

Grid semantics of `loss.params` (and `sampler.params`): the base's params belong to the base's loss.
A cell that names another loss (grid, include) starts from that loss's own defaults, plus whatever
`loss.params.*` the cell itself sets; `sweep` says so in a note for every such cell, and `--dry-run`
lists each cell's resolved parameters, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmlbench.config import config_from_dict
from dmlbench.registry import HARNESS_ARGS, init_parameter_names
from dmlbench.sweep.expand import Cell
from dmlbench.sweep.spec import Sweep


def dropped_params_notes(sweep: Sweep, cells: Sequence[Cell]) -> list[str]:
    """One note per section (loss, sampler) whose base params are not given to some cells."""
    base = config_from_dict(sweep.base)
    notes = []
    for section in ("loss", "sampler"):
        base_part = getattr(base, section)
        if not base_part.params:
            continue
        others = sorted({getattr(c.config, section).name for c in cells} - {base_part.name})
        if others:
            notes.append(
                f"the base's {section}.params {base_part.params} belong to {section} '{base_part.name}'; cells with "
                f"{section} {', '.join(others)} use that {section}'s defaults plus their own {section}.params.* "
                f"(set them in the grid or an include to give them)"
            )
    return notes


def resolved_loss_params(cell: Cell) -> str:
    """`name(key=value, key=default*, num_classes=<harness>)` for one cell.

    Defaults come from the loss's signature; harness-given arguments are named, not valued."""
    from dmlbench.losses import LOSSES

    name, given = cell.config.loss.name, cell.config.loss.params
    values = {k: (f"{given[k]!r}" if k in given else f"{v!r}*") for k, v in LOSSES.params(name).items()}
    harness = sorted(init_parameter_names(LOSSES.get(name)) & (set(HARNESS_ARGS) - {"self"}))
    values.update({k: "<harness>" for k in harness})
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"


def format_loss_params(cells: Sequence[Cell]) -> str:
    return "\n".join(f"  {c.run_id}  {resolved_loss_params(c)}" for c in cells)
