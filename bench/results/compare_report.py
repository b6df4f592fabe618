"""The text `dmlbench compare` prints: the question it answered, the table, the cells that met nothing."""

from __future__ import annotations

import math

from tabulate import tabulate

from dmlbench.results.compare import Comparison, describe_cell
from dmlbench.results.power import BETWEEN_ENV_SD
from dmlbench.results.tables import short_key


def question_lines(result: Comparison, scale: float) -> list[str]:
    cells = result.cells
    compared = [*result.by_keys, *result.auto_by]
    lines = [f"primary (the gate): {result.metric} of layer {result.layer}; values x{scale:g}; 95% intervals"]
    if not compared:
        lines.append("question: a change to an existing configuration -- each new cell against the same cell "
                     "before, two-sided")  # fmt: skip
    else:
        how = (f"--reference {result.reference}" if result.reference is not None
               else "the best baseline cell on the primary metric (name one with --reference)")  # fmt: skip
        lines.append(
            f"question: a new idea, compared across {', '.join(compared)}"
            + (f" (found automatically: {', '.join(result.auto_by)})" if result.auto_by else "")
            + f" -- each new cell against ONE reference: {how}; other baseline cells are exploratory, never the gate"
        )
    m = result.min_diff * scale
    if m:
        lines.append(f"margin --min-diff {m:g}: worse = interval below -{m:g} (exit 1); better = above 0; "
                     f"non-inferior = above -{m:g}; inconclusive = reaches below -{m:g}; MDE includes the margin")  # fmt: skip
    envs = sorted({e for e in cells["environment"] if e}) if not cells.empty else []
    if envs:
        lines.append(
            f"environments differ ({'; '.join(envs)}): runs not paired by seed (Welch), and a between-environment "
            f"sd of {BETWEEN_ENV_SD * scale:.3f} points is added (+env; provisional, docs/regression.md). "
            "For like with like, run the reference on this machine"
        )
    if result.allowed:
        lines.append(f"compared although they differ (--allow): {', '.join(result.allowed)}")
    if result.unrecorded:
        lines.append(f"not checked (recorded on one side only): {', '.join(result.unrecorded)}")
    return lines


def format_comparison(result: Comparison, scale: float = 100.0) -> str:
    cells = result.cells
    if cells.empty:
        lines = [
            f"no matching cells for {result.metric} (layer {result.layer}); matched on: "
            f"{', '.join(result.match_keys) or '(nothing)'}. Check that both sides hold runs of that "
            "metric and layer, and name what differs with --by KEY (e.g. --by loss.name)."
        ]
        return "\n".join(lines + unmatched_lines(result))
    # Show only the keys that tell cells apart (constant ones are stated once, above the table).
    shown = [c for c in result.match_keys if cells[c].nunique() > 1 or c == "dataset"]
    sides = [c for c in cells.columns if c.startswith(("new:", "base:"))]
    headers = [short_key(c) for c in shown] + [
        ("baseline " if c.startswith("base:") else "new ") + short_key(c.split(":", 1)[1]) for c in sides
    ]
    headers += ["new", "baseline", "diff [CI]", "MDE", "test", "verdict"]
    body = []
    for _, row in cells.sort_values("role", key=lambda r: r != "gate", kind="stable").iterrows():
        out = [row[c] for c in shown] + [row[c] or "–" for c in sides]
        out.append(f"{row['mean_new'] * scale:.2f} (n={int(row['n_new'])})")
        out.append(f"{row['mean_base'] * scale:.2f} (n={int(row['n_base'])})")
        if math.isnan(row["ci_low"]):
            out += [f"{row['diff'] * scale:+.2f} [no CI: n=1 on both sides]", "–"]
        else:
            out.append(
                f"{row['diff'] * scale:+.2f} [{row['ci_low'] * scale:+.2f}, {row['ci_high'] * scale:+.2f}]"
            )
            out.append(f"{row['mde'] * scale:.2f}")
        out.append(row["method"])
        shown_verdict = (
            row["verdict"].upper() if row["verdict"] == "worse" and row["role"] == "gate" else row["verdict"]
        )
        out.append(shown_verdict + (f" ({row['note']})" if row["note"] else ""))
        body.append(out)
    gate = result.gate
    counts = gate["verdict"].value_counts().to_dict()
    order = ("better", "same", "non-inferior", "inconclusive", "worse", "n/a")
    summary = ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v))
    head = [
        f"gate: {summary} ({len(gate)} new cell(s) against their reference)",
        *question_lines(result, scale),
    ]
    constant = [c for c in result.match_keys if c not in shown]
    if constant:
        head.append(
            "matched on (equal on both sides): "
            + describe_cell(tuple(cells[c].iloc[0] for c in constant), constant)
        )
    head.append(
        "test: paired = paired t over shared seeds (one environment), welch = Welch t, +queries = query-sample "
        "noise from per-query hits, +env = between-environment variance; seeds only = no query term"
    )
    table = tabulate(body, headers, tablefmt="pipe", disable_numparse=True)
    return "\n".join(head) + "\n\n" + table + "\n" + "\n".join(unmatched_lines(result))


def unmatched_lines(result: Comparison) -> list[str]:
    lines = []
    if result.unmatched_new:
        lines.append(f"\n{len(result.unmatched_new)} new cell(s) matched no baseline cell (not compared):")
        lines += [f"  {text}" for text in result.unmatched_new]
    if result.unmatched_base:
        lines.append(f"\n{len(result.unmatched_base)} baseline cell(s) matched no new cell:")
        lines += [f"  {text}" for text in result.unmatched_base]
    return lines
