"""Whether a cell's run folder may be reused beyond its state: the plugin code it ran with
(dmlbench.plugins) must be the code the cell would run now.

A folder whose code changed (finished, or failed/interrupted with a checkpoint) is never silently
reused or resumed: `sweep` refuses and says how to rerun, and with `--rerun-changed` moves the folder
to `<output_dir>/replaced/` (kept, never collected) so the cell runs again from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dmlbench.plugins import (
    REPLACED_DIR,
    CodeIdentity,
    code_changed,
    code_identity,
    describe_change,
    set_aside,
)
from dmlbench.sweep.expand import Cell, describe_cell
from dmlbench.sweep.spec import Sweep, SweepError
from dmlbench.sweep.status import CellStatus
from dmlbench.validation.checked_fields import checked_values_key

# States whose job may still write to the folder: never moved.
_ACTIVE = ("running", "pending")


@dataclass(frozen=True)
class ChangedCell:
    cell: Cell
    change: str  # what differs, e.g. "loss:x (module m): sha256 1234abcd -> 5678ef01"


def changed_code_cells(sweep: Sweep, cells: Sequence[Cell], statuses: Sequence[CellStatus]) -> list[ChangedCell]:
    """The cells whose run folder holds work made with other plugin code than they would run now."""
    state = {s.run_id: s.state for s in statuses}
    current: dict[str, CodeIdentity] = {}  # memo: many cells share their names
    out: list[ChangedCell] = []
    for cell in cells:
        if state.get(cell.run_id) in _ACTIVE:
            continue
        run_dir = sweep.runs_dir / cell.run_id
        key = checked_values_key(cell.config)
        if key not in current:
            current[key] = code_identity(cell.config)
        if code_changed(run_dir, current[key]):
            out.append(ChangedCell(cell, describe_change(run_dir, current[key])))
    return out


def refuse_or_set_aside(sweep: Sweep, changed: Sequence[ChangedCell], rerun_changed: bool, log: Callable[[str], None]) -> None:
    """Without `rerun_changed`: raise SweepError naming the change and the command that reruns.
    With it: move each changed folder to `<output_dir>/replaced/` so its cell runs again."""
    if not changed:
        return
    if not rerun_changed:
        first = changed[0]
        more = f" (and {len(changed) - 1} more cell(s))" if len(changed) > 1 else ""
        raise SweepError(
            f"sweep '{sweep.name}': cell [{describe_cell(first.cell.grid)}]{more} ran with other code than now: "
            f"{first.change}. To rerun with the current code: dmlbench sweep FILE --rerun-changed (the old run "
            f"folders move to {sweep.output_dir / REPLACED_DIR}/, kept but not collected)"
        )
    for item in changed:
        target = set_aside(sweep.runs_dir / item.cell.run_id, sweep.output_dir)
        log(f"code changed ({item.change}): {item.cell.run_id} moved to {target}; it runs again")
