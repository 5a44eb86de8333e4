"""Read one split of a raw archive: decode, parse, mask; bad lines to quarantine; count everything.

Runs inside Spark tasks (``mapInArrow``) and yields Arrow batches of the staging schema below: one
row per parsed line (``kind='line'``), per quarantined line (``kind='quarantine'``), and one
``kind='stats'`` row per split with the reader's own counts, so the driver can check that
``read = parsed + quarantined`` from counts made independently of the outputs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from fusionlog.ingest.parse import LineParser
from fusionlog.ingest.sources import Split, open_binary

STAGING = pa.schema(
    [
        ("kind", pa.string()),
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("level", pa.string()),
        ("component", pa.string()),
        ("node", pa.string()),
        ("content", pa.string()),
        ("masked", pa.string()),
        ("sessions", pa.list_(pa.string())),
        ("label", pa.int8()),
        ("raw", pa.binary()),
        ("reason", pa.string()),
        ("stats", pa.string()),
    ]
)

QUARANTINE_RAW_CAP = 4096
BATCH = 32_768


@dataclass
class SplitStats:
    read: int = 0
    parsed: int = 0
    quarantined: int = 0
    replaced_utf8: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class _LineSource:
    """Raw lines (without the line break) of a split, with truncation/corruption noted in ``errors``."""

    def __init__(self, split: Split, max_line_bytes: int) -> None:
        self.split = split
        self.max = max_line_bytes
        self.errors: list[str] = []
        self.broken_tail: bytes | None = None  # partial last line of a truncated/corrupt gzip
        self.broken_reason = ""

    def lines(self) -> Iterator[bytes]:
        with open_binary(self.split.path) as fh:
            yield from (self._gz(fh) if self.split.gz else self._plain(fh))

    def _plain(self, fh) -> Iterator[bytes]:  # noqa: ANN001
        s = self.split
        if s.start > 0:
            fh.seek(s.start - 1)
            head = fh.readline()
            pos = s.start - 1 + len(head)
            if not head.endswith(b"\n"):
                return
        else:
            pos = 0
        limit = self.max + 2
        while pos < s.end:
            line = fh.readline(limit)
            if not line:
                return
            pos += len(line)
            if len(line) == limit and not line.endswith(b"\n"):
                rest = fh.readline()  # too long: keep the head, skip the rest of the line
                while rest and not rest.endswith(b"\n"):
                    pos += len(rest)
                    rest = fh.readline()
                pos += len(rest)
            elif line.endswith(b"\n"):
                line = line[:-1]
            yield line

    def _gz(self, fh) -> Iterator[bytes]:  # noqa: ANN001
        dec = zlib.decompressobj(31)
        buf = b""
        lines_out = 0
        skipping = False
        while True:
            chunk = fh.read(1 << 18)
            if not chunk:
                break
            while chunk:
                if dec.eof:  # next member of a multi-member gzip, or trailing padding
                    if not chunk.strip(b"\x00"):
                        chunk = b""
                        break
                    if not chunk.startswith(b"\x1f\x8b"):
                        self._broken(buf, "corrupt_gzip", f"data after the end of the gzip stream after {lines_out} lines")
                        return
                    dec = zlib.decompressobj(31)
                try:
                    data = dec.decompress(chunk)
                except zlib.error as exc:
                    self._broken(buf, "corrupt_gzip", f"corrupt gzip data after {lines_out} lines: {exc}")
                    return
                chunk = dec.unused_data if dec.eof else b""
                if data:
                    parts = (buf + data).split(b"\n")
                    buf = parts.pop()
                    if skipping and parts:  # the rest of an over-long line ends here
                        parts.pop(0)
                        skipping = False
                    if skipping:
                        buf = b""
                    elif len(buf) > self.max + 2:  # over-long line: keep its head, drop the rest
                        parts.append(buf[: self.max + 2])
                        buf, skipping = b"", True
                    lines_out += len(parts)
                    yield from parts
        if not dec.eof:
            self._broken(buf, "truncated_gzip", f"gzip stream ends early (truncated) after {lines_out} lines")
            return
        if buf:
            yield buf

    def _broken(self, tail: bytes, reason: str, message: str) -> None:
        self.errors.append(message)
        self.broken_reason = reason
        self.broken_tail = tail if tail else None


class _Columns:
    def __init__(self) -> None:
        self.cols: dict[str, list] = {name: [] for name in STAGING.names}

    def __len__(self) -> int:
        return len(self.cols["kind"])

    def add(self, **values: object) -> None:
        for name, col in self.cols.items():
            col.append(values.get(name))

    def batch(self) -> pa.RecordBatch:
        b = pa.RecordBatch.from_pydict(self.cols, schema=STAGING)
        self.cols = {name: [] for name in STAGING.names}
        return b


def read_split(
    split: Split, parser: LineParser, max_line_bytes: int = 65536, on_invalid_utf8: str = "replace"
) -> Iterator[pa.RecordBatch]:
    """Parse every line of ``split``; yield staging batches, ending with one ``stats`` row."""
    st = SplitStats()
    src = _LineSource(split, max_line_bytes)
    out = _Columns()
    path = split.path
    path_sessions = parser.path_sessions_of(path)
    # the first line of a split at offset > 0 is the one after the newline at/after start-1
    line_no = split.prior_newlines + (1 if split.start == 0 else 2)
    if split.start > 0:
        with open_binary(path) as fh:
            fh.seek(split.start - 1)
            if fh.read(1) == b"\n":
                line_no -= 1

    def quarantine(raw: bytes, reason: str, no: int) -> None:
        st.quarantined += 1
        st.reasons[reason] = st.reasons.get(reason, 0) + 1
        out.add(kind="quarantine", file=path, line_no=no, raw=raw[:QUARANTINE_RAW_CAP], reason=reason)

    try:
        for raw in src.lines():
            st.read += 1
            no = line_no
            line_no += 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > max_line_bytes:
                quarantine(raw, "line_too_long", no)
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    if on_invalid_utf8 == "quarantine":
                        quarantine(raw, "invalid_utf8", no)
                        text = None
                    else:
                        st.replaced_utf8 += 1
                        text = raw.decode("utf-8", errors="replace")
                if text is not None:
                    p = parser.parse(text, path_sessions) if text.strip() else None
                    if p is None:
                        quarantine(raw, "empty_line" if not text.strip() else "no_header_match", no)
                    else:
                        st.parsed += 1
                        out.add(
                            kind="line", file=path, line_no=no, ts=p.ts, level=p.level,
                            component=p.component, node=p.node, content=p.content, masked=p.masked,
                            sessions=p.sessions, label=p.label,
                        )
            if len(out) >= BATCH:
                yield out.batch()
    except OSError as exc:
        src.errors.append(f"read error after {st.read} lines: {exc}")
    if src.broken_tail is not None:
        st.read += 1
        quarantine(src.broken_tail, src.broken_reason, line_no)
    st.errors.extend(src.errors)
    out.add(kind="stats", file=path, line_no=split.split_id, stats=json.dumps(st.__dict__))
    yield out.batch()
