"""Progress bars that suit where the output goes: tqdm's redrawn bar on a terminal; in a log file or a pipe
(a SLURM job, `| tee`, CI) one plain line every `LINE_EVERY_S` seconds instead of a redraw per update.

>>> import io
>>> out = io.StringIO()
>>> with progress_bar(total=3, desc="demo", file=out, mininterval=0) as bar:
...     _ = bar.update(3)
>>> "\\r" not in out.getvalue() and out.getvalue().splitlines()[-1].startswith("demo: 100%")
True
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any

from tqdm import tqdm

LINE_EVERY_S = 30.0  # seconds between progress lines when the output is not a terminal


class _Lines(io.TextIOBase):
    """A stream for tqdm that writes each redraw as one line (cursor moves and blank clears dropped)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(*args, **kwargs)` on a terminal (stderr unless `file=`); elsewhere periodic one-line progress."""
    stream = kwargs.pop("file", None) or sys.stderr
    if is_terminal(stream):
        return tqdm(*args, file=stream, **kwargs)
    kwargs.setdefault("mininterval", LINE_EVERY_S)
    return tqdm(*args, file=_Lines(stream), ascii=True, ncols=100, dynamic_ncols=False, **kwargs)
