"""Read one split of a raw archive: decode, parse, mask; bad lines to quarantine; count everything.

Runs inside Spark tasks (``mapInArrow``) in two passes over the same bytes, with the same decisions:

- ``scan_split`` (pass 1) yields the SCAN schema: one row per distinct masked message of the split
  (``kind='distinct'``, with its count and first line), one per quarantined line, and one
  ``kind='stats'`` row with the reader's own counts (so the driver checks ``read = parsed +
  quarantined`` against counts made independently of the outputs).
- ``parse_split`` (pass 2) yields rows of the ``lines`` contract, with template ids and params from the
  mapping the driver mined (Drain3) from the distinct messages of pass 1.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fusionlog import contracts
from fusionlog.ingest.parse import BatchParser
from fusionlog.ingest.sources import Split, open_binary

SCAN = pa.schema(
    [
        ("kind", pa.string()),
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("n", pa.int64()),
        ("masked", pa.string()),
        ("raw", pa.binary()),
        ("reason", pa.string()),
        ("stats", pa.string()),
    ]
)

QUARANTINE_RAW_CAP = 4096
CHUNK = 1 << 22  # bytes of complete lines parsed at once


@dataclass
class SplitStats:
    read: int = 0
    parsed: int = 0
    quarantined: int = 0
    replaced_utf8: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class _Blocks:
    """Raw byte blocks of a split; truncation/corruption of gzip is noted in ``errors``/``broken``."""

    def __init__(self, split: Split) -> None:
        self.split = split
        self.errors: list[str] = []
        self.broken = ""  # reason when the stream ended abnormally (the last partial line is lost)

    def __iter__(self) -> Iterator[bytes]:
        with open_binary(self.split.path) as fh:
            yield from (self._gz(fh) if self.split.gz else self._plain(fh))

    def _plain(self, fh) -> Iterator[bytes]:  # noqa: ANN001
        s = self.split
        pos = 0
        if s.start > 0:  # the first line we own starts after the newline at/after start-1
            fh.seek(s.start - 1)
            head = fh.readline()
            pos = s.start - 1 + len(head)
            if not head.endswith(b"\n"):
                return
        last = b"\n"
        while pos < s.end:
            data = fh.read(min(CHUNK, s.end - pos))
            if not data:
                return
            pos += len(data)
            last = data[-1:]
            yield data
        while last != b"\n":  # finish the line that crosses the end of the split
            data = fh.read(1 << 16)
            if not data:
                return
            i = data.find(b"\n")
            if i >= 0:
                yield data[: i + 1]
                return
            yield data

    def _gz(self, fh) -> Iterator[bytes]:  # noqa: ANN001
        dec = zlib.decompressobj(31)
        while True:
            chunk = fh.read(1 << 18)
            if not chunk:
                break
            while chunk:
                if dec.eof:  # next member of a multi-member gzip, or trailing padding
                    if not chunk.strip(b"\x00"):
                        break
                    if not chunk.startswith(b"\x1f\x8b"):
                        self._broke("corrupt_gzip", "data after the end of the gzip stream")
                        return
                    dec = zlib.decompressobj(31)
                try:
                    data = dec.decompress(chunk)
                except zlib.error as exc:
                    self._broke("corrupt_gzip", f"corrupt gzip data: {exc}")
                    return
                chunk = dec.unused_data if dec.eof else b""
                if data:
                    yield data
        if not dec.eof:
            self._broke("truncated_gzip", "gzip stream ends early (truncated)")

    def _broke(self, reason: str, message: str) -> None:
        self.broken = reason
        self.errors.append(message)


def _chunks(blocks: _Blocks, max_line_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """Complete lines, several MB at a time: (bytes ending in b'\\n', False); a final line without a
    line break: (bytes, False) at a normal end or (bytes, True) when the stream was cut there. An
    over-long line is cut to ``max_line_bytes + 2`` bytes (and quarantined by its length)."""
    cap = max_line_bytes + 2
    buf = b""
    skipping = False
    for block in blocks:
        if skipping:
            i = block.find(b"\n")
            if i < 0:
                continue
            block, skipping = block[i + 1 :], False
        buf += block
        cut = buf.rfind(b"\n")
        if cut >= 0 and (len(buf) >= CHUNK or len(buf) - cut - 1 > cap):  # a full chunk, or a long tail
            yield buf[: cut + 1], False
            buf = buf[cut + 1 :]
            cut = -1
        if len(buf) > cap and (cut < 0 or len(buf) - cut - 1 > cap):  # one line longer than the cap
            yield buf[:cap] + b"\n", False
            buf, skipping = b"", True
    if blocks.broken:
        if buf:
            cut = buf.rfind(b"\n")
            if cut >= 0:
                yield buf[: cut + 1], False
                buf = buf[cut + 1 :]
        yield buf, True
    elif buf:
        yield buf, False


def _line_array(data: bytes) -> pa.BinaryArray:
    """One element per line (each keeps its trailing line break) without copying the bytes."""
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    ends = nl + 1
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _empty(n: int, kind: str) -> dict[str, pa.Array]:
    return {f.name: (pa.array([kind] * n) if f.name == "kind" else pa.nulls(n, f.type)) for f in SCAN}


# masked message -> (template id, positions of <*> tokens, number of template tokens)
Templates = dict[str, tuple[int, tuple[int, ...], int]]


def _lines_of(split: Split, max_line_bytes: int) -> tuple[_Blocks, Iterator[tuple[bytes, bool]], int]:
    line_no = split.prior_newlines + (1 if split.start == 0 else 2)
    if split.start > 0:  # is the byte before the split a line break? then the split starts a line
        with open_binary(split.path) as fh:
            fh.seek(split.start - 1)
            if fh.read(1) == b"\n":
                line_no -= 1
    blocks = _Blocks(split)
    return blocks, _chunks(blocks, max_line_bytes), line_no


def _classify(raw: pa.BinaryArray, st: SplitStats | None, max_line_bytes: int, on_invalid_utf8: str):  # noqa: ANN202
    """Decode and pre-check lines: (text, reasons per line: None = candidate for the header regex)."""
    n = len(raw)
    reasons: list[str | None] = [None] * n
    try:
        text = raw.cast(pa.string())
    except pa.ArrowInvalid:  # some line is not UTF-8: decode line by line
        decoded = []
        for i, b in enumerate(raw.to_pylist()):
            try:
                decoded.append(b.decode("utf-8"))
            except UnicodeDecodeError:
                if on_invalid_utf8 == "quarantine":
                    reasons[i] = "invalid_utf8"
                    decoded.append("")
                else:
                    if st is not None:
                        st.replaced_utf8 += 1
                    decoded.append(b.decode("utf-8", errors="replace"))
        text = pa.array(decoded, pa.string())
    text = pc.utf8_rtrim(text, characters="\r\n")
    too_long = pc.greater(pc.binary_length(text), max_line_bytes).to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(too_long | empty):
        if reasons[i] is None:
            reasons[i] = "line_too_long" if too_long[i] else "empty_line"
    return text, reasons


def scan_split(
    split: Split, parser: BatchParser, max_line_bytes: int = 65536, on_invalid_utf8: str = "replace"
) -> Iterator[pa.RecordBatch]:
    """Pass 1: distinct masked messages, quarantined lines, and the reader's counts for ``split``."""
    st = SplitStats()
    path = split.path
    distinct: dict[str, list[int]] = {}
    blocks, chunks, line_no = _lines_of(split, max_line_bytes)
    try:
        for data, broken in chunks:
            if broken:
                if data:
                    st.read += 1
                    yield _quarantine_batch(st, path, [line_no], [data], [blocks.broken])
                    line_no += 1
                continue
            raw = _line_array(data)
            n = len(raw)
            st.read += n
            text, reasons = _classify(raw, st, max_line_bytes, on_invalid_utf8)
            cand = np.array([r is None for r in reasons])
            matched, cols = parser.parse(text.filter(pa.array(cand)), [], masked_only=True)
            cand_idx = np.flatnonzero(cand)
            matched = matched.to_numpy(zero_copy_only=False)
            for i in cand_idx[~matched]:
                reasons[i] = "no_header_match"
            good = cand_idx[matched] + line_no
            st.parsed += len(good)
            for no, m in zip(good.tolist(), cols["masked"], strict=True):
                d = distinct.get(m)
                if d is None:
                    distinct[m] = [1, no]
                else:
                    d[0] += 1
            bad = [i for i, r in enumerate(reasons) if r is not None]
            if bad:
                raws = [raw[i].as_py().rstrip(b"\n").removesuffix(b"\r") for i in bad]
                yield _quarantine_batch(st, path, [line_no + i for i in bad], raws, [reasons[i] for i in bad])
            line_no += n
    except OSError as exc:
        blocks.errors.append(f"read error: {exc}")
    st.errors.extend(f"{m} after {st.read} lines" for m in blocks.errors)
    if distinct:
        cols = _empty(len(distinct), "distinct")
        cols["file"] = pa.array([path] * len(distinct))
        cols["masked"] = pa.array(list(distinct), pa.string())
        cols["n"] = pa.array([v[0] for v in distinct.values()], pa.int64())
        cols["line_no"] = pa.array([v[1] for v in distinct.values()], pa.int64())
        yield pa.RecordBatch.from_pydict(cols, schema=SCAN)
    cols = _empty(1, "stats")
    cols["file"], cols["line_no"] = pa.array([path]), pa.array([split.split_id], pa.int64())
    cols["stats"] = pa.array([json.dumps(st.__dict__)])
    yield pa.RecordBatch.from_pydict(cols, schema=SCAN)


def _quarantine_batch(st: SplitStats, path: str, nos: list[int], raws: list[bytes], reasons: list[str]):  # noqa: ANN202
    for r in reasons:
        st.reasons[r] = st.reasons.get(r, 0) + 1
    st.quarantined += len(nos)
    cols = _empty(len(nos), "quarantine")
    cols["file"] = pa.array([path] * len(nos))
    cols["line_no"] = pa.array(nos, pa.int64())
    cols["raw"] = pa.array([r[:QUARANTINE_RAW_CAP] for r in raws], pa.binary())
    cols["reason"] = pa.array(reasons)
    return pa.RecordBatch.from_pydict(cols, schema=SCAN)


def parse_split(
    split: Split,
    parser: BatchParser,
    templates: Templates,
    max_line_bytes: int = 65536,
    on_invalid_utf8: str = "replace",
) -> Iterator[pa.RecordBatch]:
    """Pass 2: the ``lines`` rows of ``split`` (the same lines pass 1 counted as parsed)."""
    path = split.path
    path_sessions = parser.line.path_sessions_of(path)
    blocks, chunks, line_no = _lines_of(split, max_line_bytes)
    for data, broken in chunks:
        if broken:
            line_no += 1 if data else 0
            continue
        raw = _line_array(data)
        text, reasons = _classify(raw, None, max_line_bytes, on_invalid_utf8)
        cand = np.array([r is None for r in reasons])
        matched, cols = parser.parse(text.filter(pa.array(cand)), path_sessions)
        good = np.flatnonzero(cand)[matched.to_numpy(zero_copy_only=False)]
        if len(good):
            ids, params = [], []
            for m, t in zip(cols["masked"], cols["texts"], strict=True):
                tid, wild, ntok = templates[m]
                ids.append(tid)
                if wild:
                    toks = t.split()
                    params.append([toks[i] for i in wild] if len(toks) == ntok else None)
                else:
                    params.append([])
            out = {
                "file": pa.array([path] * len(good)),
                "line_no": pa.array(good + line_no, pa.int64()),
                "ts": cols["ts"], "level": cols["level"], "component": cols["component"],
                "node": cols["node"], "sessions": cols["sessions"],
                "template_id": pa.array(ids, pa.int64()),
                "params": pa.array(params, pa.list_(pa.string())),
                "label": cols["label"], "content": cols["content"],
            }
            yield pa.RecordBatch.from_pydict(out, schema=contracts.LINES)
        line_no += len(raw)
