"""Back to the raw lines: read a window's lines (1-based, inclusive) from a plain or gzip log file.

The result is a list of ``(line_no, text)``. Entries with a negative line number are notes, not log lines:

- :data:`OMITTED` (-1): ``"… N lines omitted …"`` where a window is longer than ``max_lines`` (the first
  ``max_lines - 1`` lines and the last one are kept);
- :data:`PROBLEM` (-2): why lines are missing (file not found, truncated or corrupt gzip, file shorter than
  the window, invalid range).

Reading never raises for problems of the log file: a report must still render. Files are streamed and
reading stops after the last line any request needs; lines are read in bounded chunks, so one huge line
costs no memory. Gzip is recognised by its magic bytes, whatever the suffix. Lines are split on ``\\n`` (as
the ingest counts them) and decoded as UTF-8 with ``errors="replace"``; a line longer than ``max_chars``
is cut and ends with ``…``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

OMITTED = -1
PROBLEM = -2
_CHUNK = 1 << 16
_ERRORS = (OSError, EOFError, ValueError, zlib.error)  # missing, truncated, corrupt (gzip.BadGzipFile is OSError)

Line = tuple[int, str]


@dataclass
class _Window:
    """Collects one request's lines: a head of ``max_lines - 1`` lines and the latest line after it."""

    first: int
    last: int
    max_lines: int
    head: list[Line] = field(default_factory=list)
    tail: Line | None = None
    seen: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, no: int, text: str) -> None:
        self.seen += 1
        if len(self.head) < self.max_lines - 1:
            self.head.append((no, text))
        else:
            self.tail = (no, text)

    def result(self) -> list[Line]:
        out = list(self.head)
        if self.tail is not None:
            omitted = self.seen - len(self.head) - 1
            if omitted:
                out.append((OMITTED, f"… {omitted} lines omitted …"))
            out.append(self.tail)
        return out + [(PROBLEM, n) for n in self.notes]


def _open(path: str) -> BinaryIO:
    """A local path (``file://`` allowed) or a filesystem URI, decompressed when it starts with gzip's magic."""
    if "://" in path and not path.startswith("file://"):
        from fusionlog.ingest.sources import open_binary

        raw = open_binary(path)
    else:
        raw = open(path.removeprefix("file://"), "rb")  # noqa: SIM115 - closed by the caller
    try:
        magic = raw.read(2)
        raw.seek(0)
    except Exception:
        raw.close()
        raise
    return gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw  # type: ignore[return-value]


def _iter_lines(fh: BinaryIO, keep: int) -> Iterator[bytes]:
    """Each line's first ``keep`` bytes (plus one byte to tell it was longer), read in bounded chunks."""
    while True:
        chunk = fh.readline(_CHUNK)
        if not chunk:
            return
        head = chunk[: keep + 1]
        while not chunk.endswith(b"\n"):
            chunk = fh.readline(_CHUNK)
            if not chunk:
                break
            if len(head) <= keep:
                head += chunk[: keep + 1 - len(head)]
        yield head


def _decode(raw: bytes, max_chars: int) -> str:
    text = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
    return text[: max_chars - 1] + "…" if len(text) > max_chars else text


def _scan(path: str, windows: list[_Window], max_chars: int) -> None:
    """One pass over ``path`` feeding every window (sorted by first line); notes what could not be read."""
    stop = max(w.last for w in windows)
    nxt, active, n = 0, [], 0
    try:
        with _open(path) as fh:
            for raw in _iter_lines(fh, 4 * max_chars + 4):
                n += 1
                while nxt < len(windows) and windows[nxt].first == n:
                    active.append(windows[nxt])
                    nxt += 1
                if active:
                    text = _decode(raw, max_chars)
                    for w in active:
                        w.add(n, text)
                    active = [w for w in active if w.last > n]
                if n >= stop:
                    return
    except _ERRORS as exc:
        why = f"{type(exc).__name__}: {exc}"
        note = f"… {path}: read failed after line {n}: {why} …" if n else f"… cannot read {path}: {why} …"
        for w in windows:
            if w.last > n:
                w.notes.append(note)
        return
    for w in windows:
        if w.last > n:
            w.notes.append(f"… {path} ends at line {n}, before line {w.last} …")


def raw_lines_many(requests: Iterable[tuple[str, int, int]], max_lines: int = 50,
                   max_chars: int = 500) -> list[list[Line]]:
    """Lines of several windows ``(file, first_line, last_line)``, in request order; one pass per file."""
    if max_lines < 2 or max_chars < 2:
        raise ValueError("max_lines and max_chars must be at least 2")
    reqs = list(requests)
    wins = [_Window(int(first), int(last), max_lines) for _, first, last in reqs]
    by_file: dict[str, list[_Window]] = {}
    for (path, _, _), w in zip(reqs, wins, strict=True):
        if w.first < 1 or w.last < w.first:
            w.notes.append(f"… invalid line range {w.first}-{w.last} …")
        else:
            by_file.setdefault(str(path), []).append(w)
    for path, ws in by_file.items():
        _scan(path, sorted(ws, key=lambda w: w.first), max_chars)
    return [w.result() for w in wins]


def raw_lines(file: str, first_line: int, last_line: int, max_lines: int = 50, max_chars: int = 500) -> list[Line]:
    """Lines ``first_line..last_line`` (1-based, inclusive) of ``file``; see the module docstring for notes."""
    return raw_lines_many([(file, first_line, last_line)], max_lines, max_chars)[0]
