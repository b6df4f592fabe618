"""Rendering built tables: Markdown, LaTeX (plain ASCII, booktabs) and CSV, and writing them to a folder.

Building a table (statistics, rows, columns, which cell is best) is `dmlbench.results.tables`; this
module only formats what it built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from dmlbench.results.tables import (
    Table,
    TableSpec,
    build_tables,
    format_value,
    load_paper,
    missing_as_none,
    short_key,
    sort_key,
)


def _fmt_number(value: float, spec: TableSpec) -> str:
    return f"{value * spec.scale:.{spec.decimals}f}"


def _fmt_cell(cell: pd.Series | None, spec: TableSpec) -> tuple[str, bool]:
    """`mean ± half-width`; an interval reaching past 0 or 100 % is printed as its clipped bounds
    `mean (low–high)`, since a fraction of queries cannot leave [0, 1]."""
    if cell is None:
        return "–", False
    text = _fmt_number(cell["mean"], spec)
    if cell["n"] >= 2 and np.isfinite(cell["ci"]):
        low, high = cell["mean"] - cell["ci"], cell["mean"] + cell["ci"]
        if spec.scale == 100.0 and (low < 0.0 or high > 1.0):
            text += f" ({_fmt_number(max(low, 0.0), spec)}–{_fmt_number(min(high, 1.0), spec)})"
        else:
            text += f" ± {_fmt_number(cell['ci'], spec)}"
    return text, bool(cell["best"])


def _display_value(table: Table, key: str, value: Any) -> str:
    text = format_value(value)
    return table.spec.row_labels.get(text, text) if key == table.spec.rows[0] else text


def _grid(table: Table, bold: tuple[str, str], escape: Any = str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows (strings) shared by the Markdown and LaTeX renderers."""
    headers = [escape(table.spec.headers.get(k, short_key(k))) for k in table.row_keys]
    headers += [escape(table.column_label(c)) for c in table.column_values] + ["n"]
    headers += [escape(name) for name, _ in table.extra_columns]
    by_row: dict[tuple[Any, ...], dict[Any, pd.Series]] = {}
    for _, cell in table.cells.iterrows():
        # NaN keys as None: NaN != NaN would split one configuration into one row per column
        row = tuple(missing_as_none(cell[k]) for k in table.row_keys)
        by_row.setdefault(row, {})[cell["column"]] = cell
    body = []
    for row in sorted(by_row, key=lambda r: tuple(sort_key(v, table.spec.row_order) for v in r)):
        cells = by_row[row]
        out = [escape(_display_value(table, k, v)) for k, v in zip(table.row_keys, row, strict=True)]
        for column in table.column_values:
            text, best = _fmt_cell(cells.get(column), table.spec)
            text = escape(text)
            out.append(f"{bold[0]}{text}{bold[1]}" if best else text)
        ns = sorted({int(c["n"]) for c in cells.values()})
        out.append(str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}")
        out += [escape(values.get(row, "–")) for _, values in table.extra_columns]
        body.append(out)
    if table.paper_rows is not None:
        for (method, layer, sampler, ref), rows in table.paper_rows.groupby(
            ["method", "layer", "sampler", "ref"], sort=False, dropna=False
        ):
            label = ", ".join(str(x) for x in (method, layer, sampler) if x) + (f" [{ref}]" if ref else "")
            source = f"{rows['source'].iloc[0]} {rows['table'].iloc[0]}"
            values = dict(zip(rows["column"], rows["value"], strict=True))
            out = [escape(f"paper ({source}): {label}")] + [""] * (len(table.row_keys) - 1)
            out += [_fmt_number(values[c], table.spec) if c in values else "–" for c in table.column_values]
            out += ["–"] * (1 + len(table.extra_columns))
            body.append(out)
    return headers, body


def to_markdown(table: Table) -> str:
    """`**slug** — short caption`, the table, then the long note below it."""
    headers, body = _grid(table, ("**", "**"))
    grid = tabulate(body, headers, tablefmt="pipe", disable_numparse=True)
    return f"**{table.slug}** — {table.caption()}\n\n{grid}\n\n*Note:* {table.note()}"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


# Non-ASCII symbols of our captions and cells: pdflatex reads them only as LaTeX commands.
_LATEX_SYMBOLS = {
    "±": r"$\pm$", "–": "--", "—": "---", "×": r"$\times$", "·": r"$\cdot$", "≥": r"$\geq$",
    "≤": r"$\leq$", "α": r"$\alpha$", "β": r"$\beta$", "λ": r"$\lambda$", "ε": r"$\varepsilon$", "√": r"$\sqrt{}$",
}
# `t_0.975,n-1` (a subscripted symbol) and `√n` (a root of a word): math, not escaped text.
_LATEX_MATH = re.compile(r"\b([A-Za-z])_([0-9][0-9.]*(?:,[A-Za-z0-9+-]+)?)|√(\w+)|`([^`]+)`")


def latex_escape(text: str) -> str:
    r"""Escape LaTeX specials; symbols become math/text commands, so the result is plain ASCII.

    >>> latex_escape("loss_name 91.8 ± 0.4 & 50%")
    'loss\\_name 91.8 $\\pm$ 0.4 \\& 50\\%'
    >>> latex_escape("t_0.975,n-1 · s/√n")
    '$t_{0.975,n-1}$ $\\cdot$ s/$\\sqrt{n}$'
    >>> latex_escape("see `dmlbench compare`")
    'see \\texttt{dmlbench compare}'
    """
    pieces, last = [], 0
    for match in _LATEX_MATH.finditer(text):
        pieces.append(_escape_plain(text[last : match.start()]))
        if match.group(4) is not None:  # `code`: typewriter, never the quotes a backtick makes in LaTeX
            pieces.append(f"\\texttt{{{_escape_plain(match.group(4))}}}")
        elif match.group(3) is not None:
            pieces.append(f"$\\sqrt{{{match.group(3)}}}$")
        else:
            pieces.append(f"${match.group(1)}_{{{match.group(2)}}}$")
        last = match.end()
    pieces.append(_escape_plain(text[last:]))
    return "".join(pieces)


def _escape_plain(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    return "".join(_LATEX_SYMBOLS.get(ch, ch) for ch in out)


LATEX_PREAMBLE = "\\usepackage{booktabs}\n\\usepackage{graphicx}"


def to_latex(table: Table) -> str:
    """A `table` float for `article`: short caption, the tabular shrunk to the text width when wider
    (never enlarged), the long note below it in small type."""
    headers, body = _grid(table, (r"\textbf{", "}"), escape=latex_escape)
    # Labels left, numbers right-aligned (so decimal points line up for equal widths).
    align = ["left"] * len(table.row_keys) + ["right"] * (len(headers) - len(table.row_keys))
    raw = tabulate(body, headers, tablefmt="latex_raw", disable_numparse=True, colalign=align)
    # latex_raw draws \hline three times; booktabs rules read better in papers.
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        raw = raw.replace(r"\hline", rule, 1)
    fit = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
    return (
        "% Needs \\usepackage{booktabs} (Debian/Ubuntu: texlive-latex-recommended) and \\usepackage{graphicx}.\n"
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{latex_escape(table.caption())}}}\n\\label{{tab:{table.slug}}}\n"
        f"{fit}{raw}}}\n\\par\\smallskip\n{{\\footnotesize\\raggedright {latex_escape(table.note())}\\par}}\n\\end{{table}}\n"
    )


def to_csv_frame(table: Table) -> pd.DataFrame:
    """Machine-readable cells (fractions, not scaled): row keys, column, mean, ci95, std, n, best."""
    out = table.cells.rename(columns={"ci": "ci95"}).copy()
    out.insert(0, "table", table.spec.name)
    out.insert(1, "dataset", table.dataset)
    out.insert(2, "metric", table.spec.metric if table.spec.columns != "metric" else "")
    return out


def write_tables(tables: Sequence[Table], out_dir: Path) -> list[Path]:
    """`<name>_<dataset>.md/.tex/.csv` per table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        for suffix, text in ((".md", to_markdown(table) + "\n"), (".tex", to_latex(table))):
            path = out_dir / f"{table.slug}{suffix}"
            path.write_text(text)
            written.append(path)
        path = out_dir / f"{table.slug}.csv"
        to_csv_frame(table).to_csv(path, index=False)
        written.append(path)
    return written


def render_tables_text(
    frame: pd.DataFrame, specs: Sequence[TableSpec] | None = None, paper: bool = False
) -> str:
    """All supported tables as Markdown, with the published numbers beside ours when `paper`."""
    tables = build_tables(frame, specs, load_paper() if paper else None)
    if not tables:
        return "(no finished runs to tabulate)"
    return "\n\n".join(to_markdown(t) for t in tables)
