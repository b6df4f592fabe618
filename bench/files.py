"""Reading the files a command is handed or finds (configs, sweep files, jobs.json, a run folder's JSON):
UTF-8 text with a size cap, and JSON of the shape expected. Every failure is one `FileFormatError`
line naming the file, where it breaks and what to do, never a traceback.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "a.yaml").write_bytes(b"name: caf\\xe9\\n")
>>> read_utf8(folder / "a.yaml")
Traceback (most recent call last):
...
dmlbench.errors.FileFormatError: ...a.yaml is not UTF-8 text: byte 9 (0xe9) ...; save it as UTF-8
>>> _ = (folder / "jobs.json").write_text("5")
>>> read_json_file(folder / "jobs.json", dict, "delete it")
Traceback (most recent call last):
...
dmlbench.errors.FileFormatError: ...jobs.json holds a number, not a JSON object: delete it
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dmlbench.errors import FileFormatError

# Config, sweep, table and tuning files are a few kB; a file beyond this is not one (and parsing
# 100 MB of YAML takes minutes and gigabytes).
MAX_TEXT_BYTES = 8 * 1024 * 1024


def read_utf8(path: Path, max_bytes: int | None = MAX_TEXT_BYTES) -> str:
    """The file's text; FileFormatError when it is larger than `max_bytes` or not UTF-8 (naming the
    byte offset of the first bad byte). OSError (missing, unreadable) is left to the caller."""
    path = Path(path)
    if max_bytes is not None:
        size = path.stat().st_size
        if size > max_bytes:
            raise FileFormatError(
                f"{path} is {size / 2**20:.1f} MiB, more than the {max_bytes / 2**20:.0f} MiB a config, "
                "sweep or table file may have: is it the right file?"
            )
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileFormatError(
            f"{path} is not UTF-8 text: byte {err.start} (0x{data[err.start]:02x}) {err.reason}; save it as UTF-8"
        ) from None


def _kind(value: Any) -> str:
    names = {dict: "a JSON object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def parse_json(text: str, where: str, expect: type | None = None, fix: str = "") -> Any:
    """`text` as JSON (of type `expect`, when given); FileFormatError naming `where` and `fix`."""
    tail = f": {fix}" if fix else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}){tail}") from None
    if expect is not None and not isinstance(value, expect):
        raise FileFormatError(f"{where} holds {_kind(value)}, not {_kind(expect())}{tail}")
    return value


def read_json_file(path: Path, expect: type | None = None, fix: str = "") -> Any:
    """A JSON file's value (of type `expect`, when given); FileFormatError naming the file and `fix`
    when it is not UTF-8 JSON of that type. OSError (missing, unreadable) is left to the caller."""
    return parse_json(read_utf8(path, max_bytes=None), str(path), expect, fix)
