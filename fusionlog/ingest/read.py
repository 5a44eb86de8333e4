"""Read one split of a raw archive: decode, parse, mask; bad lines to quarantine; count everything.

Runs inside Spark tasks (``mapInArrow``) in two passes over the same bytes, with the same decisions:

- ``scan_split`` (pass 1) yields the SCAN schema: one row per distinct masked message of the split
  (``kind='distinct'``, with its count and first line), one per quarantined line, and one
  ``kind='stats'`` row with the reader's own counts (so the driver checks ``read = parsed +
  quarantined`` against counts made independently of the outputs).
- ``parse_split`` (pass 2) yields rows of the ``lines`` contract, with template ids and params from the
  mapping the driver mined (Drain3) from the distinct messages of pass 1.

File-level decisions, the same in every split of a file and in both passes:

- A gzip whose content is gzip again (``x.log.gz.gz``) is decompressed again, up to
  ``MAX_GZ_LAYERS`` layers; content still gzip after that is quarantined whole (``nested_gzip``).
- A file whose first ``SNIFF_BYTES`` (after decompression) are more than ``BINARY_SHARE`` non-text
  (bytes that are not UTF-8, and control bytes other than tab, LF, VT, FF, CR and ESC) is binary:
  every line of it is quarantined as ``binary_file`` and nothing of it is mined.
- Line ends are LF, CRLF and a lone CR (old Mac line ends; counted per file as ``cr_line_ends``).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
SAMPLE_CHARS = 300  # a sample line in a note is cut here
CHUNK = 1 << 22  # bytes of complete lines parsed at once
GZ_MAGIC = b"\x1f\x8b\x08"  # gzip, deflate
MAX_GZ_LAYERS = 3  # gzip inside gzip: layers decompressed at most
SNIFF_BYTES = 1 << 16  # the head of a file (after decompression) that decides whether it is binary
BINARY_SHARE = 0.30  # binary above this share of non-text bytes in the head (Perl's -B uses 1/3)
# one char per non-text byte once decoded with surrogateescape: undecodable bytes and C0 controls
# other than \t \n \v \f \r and ESC (ANSI colours), and DEL
_NON_TEXT = re.compile("[\udc80-\udcff\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_LONE_CR = re.compile(rb"\r(?!\n)")


@dataclass
class SplitStats:
    read: int = 0
    parsed: int = 0
    quarantined: int = 0
    replaced_utf8: int = 0
    cr_line_ends: int = 0  # lines ended by a lone CR
    gz_layers: int = 0  # gzip layers decompressed: 0 plain, 1 gzip, 2 or 3 gzip inside gzip
    binary: bool = False  # the file was treated as binary (every line quarantined as binary_file)
    reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def non_text_share(head: bytes) -> float:
    """Share of ``head``'s bytes that are not text: not UTF-8, or control bytes (see ``_NON_TEXT``)."""
    if not head:
        return 0.0
    return len(_NON_TEXT.findall(head.decode("utf-8", "surrogateescape"))) / len(head)


def line_end_from(fh, pos: int) -> int | None:  # noqa: ANN001
    """Position of the first line end at or after ``pos``: an LF (also the LF of a CRLF) or a CR not
    followed by LF (a CR as the last byte of the file included); None when the file ends first."""
    fh.seek(pos)
    base, cr_last = pos, False
    while True:
        data = fh.read(1 << 16)
        if cr_last:  # the previous piece ended in CR
            return base if data[:1] == b"\n" else base - 1
        if not data:
            return None
        lf, cr = data.find(b"\n"), data.find(b"\r")
        if cr >= 0 and (lf < 0 or cr < lf):
            if cr + 1 < len(data):
                return base + cr + (data[cr + 1] == 10)
            cr_last = True
        elif lf >= 0:
            return base + lf
        base += len(data)


def _peek(blocks: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first ``n`` bytes of a block stream, and the whole stream again."""
    got: list[bytes] = []
    size = 0
    for b in blocks:
        got.append(b)
        size += len(b)
        if size >= n:
            break
    head = b"".join(got)
    return head[:n], itertools.chain([head], blocks)


class _Blocks:
    """Byte blocks of a split's lines, every line end made an LF (a lone CR becomes LF, CRLF stays).

    Truncation/corruption of gzip is noted in ``errors``/``broken``; a reason for quarantining the
    whole file (``binary_file``, ``nested_gzip``) in ``whole``/``whole_msg``: both are set before the
    first block is yielded.
    """

    def __init__(self, split: Split, binary_share: float = BINARY_SHARE) -> None:
        self.split = split
        self.binary_share = binary_share
        self.errors: list[str] = []
        self.broken = ""  # reason when the stream ended abnormally (the last partial line is lost)
        self.whole = ""  # reason given to every line of the file
        self.whole_msg = ""
        self.gz_layers = 0
        self.cr_line_ends = 0

    def __iter__(self) -> Iterator[bytes]:
        with open_binary(self.split.path) as fh:
            if self.split.gz:
                content, head = self._gz_layers(fh)
            else:  # every split of a file judges the same head: the file's first bytes
                fh.seek(0)
                head = fh.read(SNIFF_BYTES)
                content = self._plain(fh)
            if not self.whole:
                share = non_text_share(head)
                if share > self.binary_share:
                    self.whole = "binary_file"
                    self.whole_msg = (
                        f"treated as binary: {share:.0%} of its first {len(head)} bytes are not text "
                        f"(threshold {self.binary_share:.0%}); every line quarantined as binary_file"
                    )
            yield from self._lone_cr(content)

    def _plain(self, fh) -> Iterator[bytes]:  # noqa: ANN001
        """The lines that start in [start, end): from the first line start at/after ``start`` to the
        line end that finishes the line crossing ``end``."""
        s = self.split
        begin = 0
        if s.start > 0:
            first = line_end_from(fh, s.start - 1)
            if first is None:
                return
            begin = first + 1
        if begin >= s.end:
            return
        stop = line_end_from(fh, s.end - 1)
        left = None if stop is None else stop + 1 - begin
        fh.seek(begin)
        while left is None or left > 0:
            data = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data

    def _gz_layers(self, fh) -> tuple[Iterator[bytes], bytes]:  # noqa: ANN001
        """The decompressed content (gzip inside gzip decompressed again) and its first bytes."""
        content = self._gunzip(iter(lambda: fh.read(1 << 18), b""))
        self.gz_layers = 1
        while True:
            head, content = _peek(content, SNIFF_BYTES)
            if not head.startswith(GZ_MAGIC):
                return content, head
            if self.gz_layers >= MAX_GZ_LAYERS:
                self.whole = "nested_gzip"
                self.whole_msg = (
                    f"still gzip after {MAX_GZ_LAYERS} layers of gzip were decompressed; "
                    "every line quarantined as nested_gzip"
                )
                return content, head
            content = self._gunzip(content)
            self.gz_layers += 1

    def _gunzip(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        dec = zlib.decompressobj(31)
        carry = b""
        for chunk in chunks:
            chunk, carry = carry + chunk, b""
            while chunk:
                if dec.eof:  # next member of a multi-member gzip, or trailing padding
                    if not chunk.strip(b"\x00"):
                        break
                    if len(chunk) < 2 and b"\x1f\x8b".startswith(chunk):  # the magic spans two chunks
                        carry = chunk
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
        if carry:
            self._broke("corrupt_gzip", "data after the end of the gzip stream")
        elif not dec.eof and not self.broken:  # an inner layer cut short by a broken outer one: noted once
            self._broke("truncated_gzip", "gzip stream ends early (truncated)")

    def _lone_cr(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """Lone CRs (not followed by LF) become LF, counted in ``cr_line_ends``; a CR at the end of
        a block waits for the next block's first byte."""
        held = False
        for b in blocks:
            if held:
                b = b"\r" + b
            held = b.endswith(b"\r")
            if held:
                b = b[:-1]
            cr = b.count(b"\r")
            if cr:
                lone = cr - b.count(b"\r\n")
                if lone:
                    self.cr_line_ends += lone
                    b = _LONE_CR.sub(b"\n", b)
            if b:
                yield b
        if held:
            self.cr_line_ends += 1
            yield b"\n"

    def _broke(self, reason: str, message: str) -> None:
        self.broken = reason
        self.errors.append(message)


def gunzip_split(split: Split, dest: str, binary_share: float = BINARY_SHARE) -> dict:
    """Decompress the gzip file of ``split`` (every gzip layer, as pass 1 reads it) into the plain file ``dest``.

    Returns ``{"source", "path", "size", "layers", "clean"}``. Not clean (a truncated or corrupt stream, gzip
    nested too deep, binary content, a read error): ``dest`` is removed and the file stays one gzip split, read
    as before, so what is quarantined and noted does not change."""
    blocks = _Blocks(split, binary_share)
    clean = False
    try:
        with open_binary(split.path) as fh, open(dest, "wb") as out:
            content, head = blocks._gz_layers(fh)
            if not blocks.whole and non_text_share(head) <= binary_share:
                for data in content:
                    out.write(data)
                clean = not (blocks.whole or blocks.broken or blocks.errors)
    except OSError:
        clean = False
    if not clean:
        Path(dest).unlink(missing_ok=True)
    return {"source": split.path, "path": dest, "size": Path(dest).stat().st_size if clean else 0,
            "layers": blocks.gz_layers, "clean": clean}


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


def _lines_of(
    split: Split, max_line_bytes: int, binary_share: float = BINARY_SHARE
) -> tuple[_Blocks, Iterator[tuple[bytes, bool]], int]:
    line_no = split.prior_newlines + (1 if split.start == 0 else 2)
    if split.start > 0:  # does a line end just before the split? (LF, or CR not followed by LF)
        with open_binary(split.path) as fh:
            fh.seek(split.start - 1)
            two = fh.read(2)
            if two[:1] == b"\n" or (two[:1] == b"\r" and two[1:2] != b"\n"):
                line_no -= 1
    blocks = _Blocks(split, binary_share)
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
    split: Split,
    parser: BatchParser,
    max_line_bytes: int = 65536,
    on_invalid_utf8: str = "replace",
    binary_share: float = BINARY_SHARE,
) -> Iterator[pa.RecordBatch]:
    """Pass 1: distinct masked messages, quarantined lines, and the reader's counts for ``split``."""
    st = SplitStats()
    path = split.name
    distinct: dict[str, list[int]] = {}
    blocks, chunks, line_no = _lines_of(split, max_line_bytes, binary_share)
    try:
        for data, broken in chunks:
            if blocks.whole:  # binary, or gzip nested too deep: every line quarantined, none mined
                if data:
                    raws = [r.rstrip(b"\n").removesuffix(b"\r") for r in _line_array(data).to_pylist()]
                    n = len(raws)
                    st.read += n
                    yield _quarantine_batch(st, path, list(range(line_no, line_no + n)), raws, [blocks.whole] * n)
                    line_no += n
                continue
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
    st.cr_line_ends, st.binary = blocks.cr_line_ends, blocks.whole == "binary_file"
    st.gz_layers = blocks.gz_layers or split.layers
    if blocks.whole_msg and split.start == 0:  # said once per file, by its first split
        st.errors.append(blocks.whole_msg)
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
    binary_share: float = BINARY_SHARE,
    stats: dict | None = None,
) -> Iterator[pa.RecordBatch]:
    """Pass 2: the ``lines`` rows of ``split`` (the same lines pass 1 counted as parsed). ``stats`` (a dict) gets
    ``no_ts``, the lines whose timestamp did not parse where the system has one, and ``no_ts_sample``, the first
    such line (its number and text, cut at :data:`SAMPLE_CHARS`)."""
    path = split.name
    stats = stats if stats is not None else {}
    stats.setdefault("no_ts", 0)
    timed = bool(parser.line.ts_format)
    path_sessions = parser.line.path_sessions_of(path)
    blocks, chunks, line_no = _lines_of(split, max_line_bytes, binary_share)
    for data, broken in chunks:
        if blocks.whole:  # quarantined whole in pass 1: no line of it
            return
        if broken:
            line_no += 1 if data else 0
            continue
        raw = _line_array(data)
        text, reasons = _classify(raw, None, max_line_bytes, on_invalid_utf8)
        cand = np.array([r is None for r in reasons])
        matched, cols = parser.parse(text.filter(pa.array(cand)), path_sessions)
        good = np.flatnonzero(cand)[matched.to_numpy(zero_copy_only=False)]
        if len(good) and timed and cols["ts"].null_count:
            miss = np.flatnonzero(cols["ts"].is_null().to_numpy(zero_copy_only=False))
            stats["no_ts"] += len(miss)
            if "no_ts_sample" not in stats:
                first = int(good[miss[0]])
                stats["no_ts_sample"] = [first + line_no, text[first].as_py().rstrip("\r\n")[:SAMPLE_CHARS]]
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
