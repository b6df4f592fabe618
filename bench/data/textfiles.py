"""Parsers for the whitespace-separated annotation files of the benchmark archives.

Pure functions over text: every error names the file, the 1-based line number and what to do.
"""

from __future__ import annotations

from pathlib import Path

from dmlbench.data.base import DatasetError

Row = tuple[int, list[str]]  # (1-based line number, whitespace-split tokens)

REEXTRACT = "re-extract it from the official archive"


UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: Path) -> str:
    """The file's text, UTF-8 (else latin-1), without a leading byte-order mark.

    Windows editors write a BOM when they re-save a list; kept, it would glue an invisible
    character to the first token (a count line would no longer be a number).
    """
    if not path.is_file():
        raise DatasetError(f"missing annotation file {path}; {REEXTRACT} or fix the dataset root")
    data = path.read_bytes()
    data = data.removeprefix(UTF8_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # a few mirrors re-save the lists in Windows encodings


def split_rows(text: str) -> list[Row]:
    """Non-blank lines as (line number, tokens); padded columns and CRLF endings do not matter.

    >>> split_rows("a  b\\r\\n\\n c d \\n")
    [(1, ['a', 'b']), (3, ['c', 'd'])]
    """
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def parse_table(text: str, name: str, *, min_tokens: int, max_tokens: int | None = None) -> list[Row]:
    """Rows of a table without count/header lines (CUB style), each with a checked token count.

    >>> parse_table("1 a.jpg\\n2 b.jpg\\n", "images.txt", min_tokens=2, max_tokens=2)
    [(1, ['1', 'a.jpg']), (2, ['2', 'b.jpg'])]
    >>> parse_table("1 a.jpg\\n2\\n", "images.txt", min_tokens=2)
    Traceback (most recent call last):
    ...
    dmlbench.errors.DatasetError: images.txt line 2: expected at least 2 columns, found 1 ('2'); ...
    """
    rows = split_rows(text)
    for n, tokens in rows:
        check_width(tokens, name, n, min_tokens, max_tokens)
    return rows


def check_width(tokens: list[str], name: str, line: int, min_tokens: int, max_tokens: int | None) -> None:
    if len(tokens) < min_tokens or (max_tokens is not None and len(tokens) > max_tokens):
        want = str(min_tokens) if max_tokens == min_tokens else f"at least {min_tokens}"
        if max_tokens is not None and max_tokens != min_tokens:
            want = f"{min_tokens}-{max_tokens}"
        shown = " ".join(tokens)[:80]
        raise DatasetError(
            f"{name} line {line}: expected {want} columns, found {len(tokens)} ('{shown}'); "
            f"the file is damaged or not the expected file - {REEXTRACT}"
        )


def parse_counted_table(
    text: str,
    name: str,
    *,
    header_first: str | None,
    min_tokens: int,
    max_tokens: int | None = None,
) -> tuple[list[str], list[Row]]:
    """DeepFashion style: line 1 = number of data rows, line 2 = column names, then the rows.

    The count is checked against the rows actually present, so a truncated download is caught here.

    >>> header, rows = parse_counted_table("2\\nimage_name item_id\\na.jpg   id_1\\nb.jpg id_2\\n", "p.txt",
    ...                                    header_first="image_name", min_tokens=2, max_tokens=2)
    >>> header, [r[1] for r in rows]
    (['image_name', 'item_id'], [['a.jpg', 'id_1'], ['b.jpg', 'id_2']])
    >>> parse_counted_table("3\\nimage_name item_id\\na.jpg id_1\\n", "p.txt", header_first="image_name", min_tokens=2)
    Traceback (most recent call last):
    ...
    dmlbench.errors.DatasetError: p.txt line 1: says 3 data rows but the file has 1; ...
    """
    rows = split_rows(text)
    if len(rows) < 2:
        raise DatasetError(f"{name}: expected a count line and a header line, the file has {len(rows)} lines; {REEXTRACT}")
    (count_line, count_tokens), (header_line, header) = rows[0], rows[1]
    if len(count_tokens) != 1 or not count_tokens[0].isdigit():
        raise DatasetError(
            f"{name} line {count_line}: expected the number of rows, found '{' '.join(count_tokens)[:80]}'; "
            f"this file must start with a count line and a header line - {REEXTRACT}"
        )
    if header_first is not None and header[0] != header_first:
        raise DatasetError(
            f"{name} line {header_line}: expected a header starting with '{header_first}', found "
            f"'{' '.join(header)[:80]}'; {REEXTRACT}"
        )
    data = rows[2:]
    expected = int(count_tokens[0])
    if expected != len(data):
        raise DatasetError(
            f"{name} line {count_line}: says {expected} data rows but the file has {len(data)}; "
            f"it is truncated or was edited - {REEXTRACT} (or correct the count line if you cut it on purpose)"
        )
    for n, tokens in data:
        check_width(tokens, name, n, min_tokens, max_tokens)
    return header, data


def parse_int(token: str, name: str, line: int, what: str) -> int:
    """An integer column, or an error naming file, line and column.

    >>> parse_int("12", "f.txt", 3, "class id")
    12
    >>> parse_int("x", "f.txt", 3, "class id")
    Traceback (most recent call last):
    ...
    dmlbench.errors.DatasetError: f.txt line 3: class id must be an integer, found 'x'; ...
    """
    try:
        return int(token)
    except ValueError:
        raise DatasetError(f"{name} line {line}: {what} must be an integer, found '{token}'; {REEXTRACT}") from None


def parse_float(token: str, name: str, line: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise DatasetError(f"{name} line {line}: {what} must be a number, found '{token}'; {REEXTRACT}") from None
