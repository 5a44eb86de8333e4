"""Synthetic raw log archives, for SCALE BENCHMARKS ONLY (never for accuracy figures).

The output looks like the real system's raw log (same line format, realistic values, increasing
timestamps) so that the ingest path does the same work per line as on real data, but its content is
resampled: use it to measure throughput and memory, not detection quality.

- **HDFS**: blocks (sessions) replay real event sequences (normal ones from ``hdfs_train``, anomalous
  ones from ``hdfs_test_abnormal`` for ``anomaly_ratio`` of the blocks); every event is rendered from
  its real template with fresh block ids, datanode IPs, ports, sizes and paths, and the level and
  component learned from the real lines of ``HDFS_20000.log.gz``. Many blocks are interleaved in time.
  The anomalous block ids go to ``<out>.anomalous_blocks`` (one per line).
- **Other systems**: real lines of the loghub 2k sample are replayed with their variable parts (the
  ``<*>`` positions of the ground-truth template, or digit-bearing tokens) replaced by fresh values of
  the same shape and the timestamp fields regenerated; no labels.

Generation streams in chunks (constant memory) and is deterministic for a seed (same bytes, gzip
included: no name or mtime in the gzip header).
"""

from __future__ import annotations

import bisect
import csv
import functools
import gzip
import os
import queue
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from fusionlog.config import load_system
from fusionlog.ingest.header import format_fields, format_regex

CHUNK_LINES = 16_384
GZIP_LEVEL = 3

# --------------------------------------------------------------------------------------------------
# entry point


def synth(
    system: str,
    n_lines: int,
    out: Path,
    *,
    gz: bool | None = None,
    seed: int = 0,
    anomaly_ratio: float = 0.03,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Write a synthetic raw log of exactly ``n_lines`` lines of ``system`` to ``out``. SCALE BENCHMARKS ONLY.

    ``out`` is gzip-compressed when ``gz`` is true or, with ``gz=None``, when its name ends in ``.gz``.
    For HDFS the anomalous block ids are written to ``<out>.anomalous_blocks``. The file appears
    atomically (written to a temporary sibling, then renamed). Returns a summary dict.
    """
    if n_lines < 0:
        raise ValueError(f"n_lines must be >= 0, got {n_lines}")
    if not 0.0 <= anomaly_ratio <= 1.0:
        raise ValueError(f"anomaly_ratio must be in [0, 1], got {anomaly_ratio}")
    out = Path(out)
    gz = out.name.endswith(".gz") if gz is None else gz
    data = _data_dir(data_dir)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"system": system, "path": str(out), "gz": gz, "seed": seed}
    if system == "HDFS":
        labels = Path(f"{out}.anomalous_blocks")
        model = _hdfs_model(data)
        stats = {"blocks": 0, "anomalous": 0}
        with _AtomicFile(labels) as lab:
            chunks = _hdfs_chunks(n_lines, rng, anomaly_ratio, model, lab, stats)
            raw = _write(out, gz, chunks)
        summary.update(blocks=stats["blocks"], anomalous_blocks=stats["anomalous"], labels_path=str(labels))
    else:
        model_g = _generic_model(system, data)
        raw = _write(out, gz, _generic_chunks(n_lines, rng, model_g))
        summary.update(blocks=None, anomalous_blocks=None, labels_path=None)
    secs = time.perf_counter() - t0
    summary.update(
        lines=n_lines,
        bytes=out.stat().st_size,
        raw_bytes=raw,
        seconds=round(secs, 3),
        lines_per_s=round(n_lines / secs) if secs > 0 else None,
    )
    return summary


def _data_dir(explicit: Path | None) -> Path:
    """The shipped data directory: argument, ./data, or the one beside the package."""
    if explicit is not None:
        return Path(explicit)
    local = Path.cwd() / "data"
    if (local / "loghub_2k").is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "data"


# --------------------------------------------------------------------------------------------------
# output: a writer thread compresses / writes while the main thread generates


class _AtomicFile:
    """A binary file written to a temporary sibling and renamed into place on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
        self.fh: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.tmp, "wb")
        return self.fh

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.fh is not None
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _write(out: Path, gz: bool, chunks: Iterator[list[str]]) -> int:
    """Write chunks of lines (text with line breaks) as UTF-8; returns the uncompressed byte count."""
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    raw = 0
    with _AtomicFile(out) as fh:
        sink: BinaryIO = (
            gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[assignment]
            if gz
            else fh
        )

        def drain() -> None:
            try:
                while (buf := q.get()) is not None:
                    sink.write(buf)
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)
                while q.get() is not None:
                    pass

        worker = threading.Thread(target=drain, name="synth-writer", daemon=True)
        worker.start()
        try:
            for chunk in chunks:
                if errors:
                    break
                buf = "".join(chunk).encode("utf-8")
                raw += len(buf)
                q.put(buf)
        finally:
            q.put(None)
            worker.join()
        if errors:
            raise errors[0]
        if gz:
            sink.close()
    return raw


# --------------------------------------------------------------------------------------------------
# HDFS: sessions (blocks) replaying real event sequences

_HDFS_START = datetime(2008, 11, 9, 20, 35, 18)
# event id -> (level, component, pid kind) used when HDFS_20000 has no line of that event.
# pid kind: 'ns' namenode IPC handler, 'dn' datanode daemon thread, 'scan' block scanner, 'x' per-connection
_HDFS_DEFAULTS: dict[int, tuple[str, str, str]] = {
    1: ("INFO", "dfs.FSDataset", "dn"),
    2: ("INFO", "dfs.DataBlockScanner", "scan"),
    3: ("INFO", "dfs.DataNode$DataXceiver", "x"),
    4: ("WARN", "dfs.DataNode$DataXceiver", "x"),
    5: ("INFO", "dfs.DataNode$DataXceiver", "x"),
    6: ("INFO", "dfs.DataNode$DataXceiver", "x"),
    7: ("INFO", "dfs.DataNode$DataXceiver", "x"),
    8: ("INFO", "dfs.DataNode$PacketResponder", "x"),
    9: ("INFO", "dfs.DataNode$PacketResponder", "x"),
    10: ("INFO", "dfs.DataNode$PacketResponder", "x"),
    11: ("INFO", "dfs.DataNode$PacketResponder", "x"),
    12: ("INFO", "dfs.DataNode$DataXceiver", "x"),
    13: ("INFO", "dfs.DataNode$BlockReceiver", "x"),
    14: ("INFO", "dfs.DataNode$BlockReceiver", "x"),
    15: ("INFO", "dfs.DataNode$BlockReceiver", "x"),
    16: ("INFO", "dfs.DataNode$DataTransfer", "x"),
    17: ("WARN", "dfs.DataNode", "dn"),
    18: ("INFO", "dfs.DataNode", "dn"),
    19: ("INFO", "dfs.FSDataset", "x"),
    20: ("WARN", "dfs.FSDataset", "dn"),
    21: ("INFO", "dfs.FSDataset", "dn"),
    22: ("INFO", "dfs.FSNamesystem", "ns"),
    23: ("INFO", "dfs.FSNamesystem", "ns"),
    24: ("INFO", "dfs.FSNamesystem", "ns"),
    25: ("INFO", "dfs.FSNamesystem", "dn"),
    26: ("INFO", "dfs.FSNamesystem", "ns"),
    27: ("INFO", "dfs.FSNamesystem", "ns"),
    28: ("WARN", "dfs.FSNamesystem", "ns"),
    29: ("WARN", "dfs.PendingReplicationBlocks$PendingReplicationMonitor", "dn"),
}
_PID_KIND = {"ns": tuple(range(26, 36)), "dn": (18, 19), "scan": (13,)}
_HDFS_HEADER = re.compile(r"^(\d{6}) (\d{6}) (\d+) (\S+) (\S+): (.*)$")
_DIGITS = re.compile(r"\d+")


class _HdfsModel:
    """Real sequences and per-event header facts (level, component, pid pool)."""

    def __init__(
        self,
        normal: list[tuple[int, ...]],
        abnormal: list[tuple[int, ...]],
        heads: dict[int, str],
        pids: dict[int, tuple[str, ...] | None],
    ) -> None:
        self.normal = normal
        self.abnormal = abnormal
        self.heads = heads
        self.pids = pids
        self.normal_by_len = sorted(normal, key=len)
        self.normal_lens = [len(s) for s in self.normal_by_len]


def hdfs_template_regexes(data: Path) -> list[re.Pattern[str]]:
    """One anchored regex per line of ``HDFS_templates.csv`` (event id k = index k-1)."""
    templates = (data / "HDFS" / "HDFS_templates.csv").read_text(encoding="utf-8").splitlines()
    return [re.compile("^" + ".*?".join(re.escape(p) for p in t.split("<*>")) + "$", re.S) for t in templates]


def _read_sequences(path: Path) -> list[tuple[int, ...]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [line.strip().split(",", 1) for line in fh if line.strip()]
    return [tuple(int(x) for x in seq.split()) for _, seq in rows if seq.split()]


@functools.lru_cache(maxsize=4)
def _hdfs_model(data: Path) -> _HdfsModel:
    need = [data / "HDFS" / n for n in ("hdfs_train.gz", "hdfs_test_abnormal.gz", "HDFS_20000.log.gz")]
    for p in need:
        if not p.exists():
            raise FileNotFoundError(f"HDFS synth needs {p} (shipped under data/, see data/SOURCES.md)")
    normal, abnormal = _read_sequences(need[0]), _read_sequences(need[1])
    used = {e for s in normal + abnormal for e in s}
    if not used <= set(_HDFS_DEFAULTS):
        raise ValueError(
            f"HDFS sequences use event ids without a renderer: {sorted(used - set(_HDFS_DEFAULTS))}"
        )
    # learn level/component/pids of each event from the real lines
    rxs = hdfs_template_regexes(data)
    seen: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    pids: dict[int, list[str]] = defaultdict(list)
    events: dict[str, int | None] = {}  # contents with numbers blanked -> event id
    with gzip.open(need[2], "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _HDFS_HEADER.match(line.rstrip("\r\n"))
            if not m:
                continue
            content = _DIGITS.sub("0", m.group(6))
            if content not in events:
                events[content] = next((i + 1 for i, rx in enumerate(rxs) if rx.match(content)), None)
            event = events[content]
            if event is not None:
                seen[event][(m.group(4), m.group(5))] += 1
                pids[event].append(m.group(3))
    heads: dict[int, str] = {}
    pid_pools: dict[int, tuple[str, ...] | None] = {}
    for event, (level, comp, kind) in _HDFS_DEFAULTS.items():
        if seen[event]:
            level, comp = seen[event].most_common(1)[0][0]
        heads[event] = f" {level} {comp}: "
        observed = pids.get(event, [])
        if kind == "x":  # one thread per connection: ids grow over time
            pid_pools[event] = None
        elif observed:  # a fixed pool of threads (namenode handlers, datanode daemons)
            pid_pools[event] = tuple(observed[:500])
        else:
            pid_pools[event] = tuple(str(p) for p in _PID_KIND[kind])
    return _HdfsModel(normal, abnormal, heads, pid_pools)


class _Block:
    __slots__ = ("id", "seq", "n", "pos", "reps", "size", "pid", "path", "sub", "peer")

    def __init__(
        self,
        bid: str,
        seq: tuple[int, ...],
        reps: tuple[str, str, str],
        size: str,
        pid: int,
        path: str,
        sub: int,
        peer: str,
    ) -> None:
        self.id, self.seq, self.n, self.pos, self.reps, self.size = bid, seq, len(seq), 0, reps, size
        self.pid, self.path, self.sub, self.peer = pid, path, sub, peer


_EXC_WRITE = (
    "java.io.IOException: Connection reset by peer",
    "java.io.EOFException",
    "java.io.IOException: Could not read from stream",
    "java.io.InterruptedIOException: Interruped while waiting for IO on channel "
    "java.nio.channels.SocketChannel[closed]. 0 millis timeout left.",
)
_EXC_RESPONDER = (
    "java.io.EOFException",
    "java.io.IOException: Connection reset by peer",
    "java.io.InterruptedIOException: Interruped while waiting for IO on channel",
)


def _hdfs_renderers(rng: random.Random) -> list[Callable[[_Block, int], str] | None]:
    """event id -> content renderer (block, position in its sequence)."""
    rr = rng.randrange
    ch = rng.choice

    rnd = rng.random

    def port() -> int:
        return 32768 + int(rnd() * 28232)

    def r(b: _Block, k: int) -> str:  # the replica this event is about
        return b.reps[k % 3]

    def targets(b: _Block, k: int, sep: str) -> str:  # one or two datanodes to copy to
        return f"{b.peer}:50010{sep}{r(b, k + 1)}:50010" if rnd() < 0.6 else f"{b.peer}:50010"

    def offsets(b: _Block, k: int) -> str:
        o = rr(1, 1024) * 65536
        to, meta = o - 65536 * rr(0, 2), o // 128 + 7
        return f"Changing block file offset of block {b.id} from {o} to {to} meta file offset to {meta}"

    f: dict[int, Callable[[_Block, int], str]] = {
        1: lambda b, k: f"Adding an already existing block {b.id}",
        2: lambda b, k: f"Verification succeeded for {b.id}",
        3: lambda b, k: f"{r(b, k)}:50010 Served block {b.id} to /{b.peer}",
        4: lambda b, k: f"{r(b, k)}:50010:Got exception while serving {b.id} to /{b.peer}:",
        5: lambda b, k: f"Receiving block {b.id} src: /{r(b, k)}:{port()} dest: /{r(b, k)}:50010",
        6: lambda b, k: (
            f"Received block {b.id} src: /{r(b, k)}:{port()} dest: /{r(b, k)}:50010 of size {b.size}"
        ),
        7: lambda b, k: f"writeBlock {b.id} received exception {ch(_EXC_WRITE)}",
        8: lambda b, k: f"PacketResponder {k % 3} for block {b.id} Interrupted.",
        9: lambda b, k: f"Received block {b.id} of size {b.size} from /{r(b, k)}",
        10: lambda b, k: f"PacketResponder {b.id} {k % 3} Exception {ch(_EXC_RESPONDER)}",
        11: lambda b, k: f"PacketResponder {k % 3} for block {b.id} terminating",
        12: lambda b, k: f"{r(b, k)}:50010:Exception writing block {b.id} to mirror {r(b, k + 1)}:50010",
        13: lambda b, k: f"Receiving empty packet for block {b.id}",
        14: lambda b, k: f"Exception in receiveBlock for block {b.id} {ch(_EXC_WRITE)}",
        15: offsets,
        16: lambda b, k: f"{r(b, k)}:50010:Transmitted block {b.id} to /{b.peer}:50010",
        17: lambda b, k: f"{r(b, k)}:50010:Failed to transfer {b.id} to {b.peer}:50010 got {ch(_EXC_WRITE)}",
        18: lambda b, k: f"{r(b, k)}:50010 Starting thread to transfer block {b.id} to {targets(b, k, ', ')}",
        19: lambda b, k: f"Reopen Block {b.id}",
        20: lambda b, k: f"Unexpected error trying to delete block {b.id}. BlockInfo not found in volumeMap.",
        21: lambda b, k: f"Deleting block {b.id} file /mnt/hadoop/dfs/data/current/subdir{b.sub}/{b.id}",
        22: lambda b, k: f"BLOCK* NameSystem.allocateBlock: {b.path}. {b.id}",
        23: lambda b, k: f"BLOCK* NameSystem.delete: {b.id} is added to invalidSet of {r(b, k)}:50010",
        24: lambda b, k: (
            f"BLOCK* Removing block {b.id} from neededReplications as it does not belong to any file."
        ),
        25: lambda b, k: (
            f"BLOCK* ask {r(b, k)}:50010 to replicate {b.id} to datanode(s) {targets(b, k, ' ')}"
        ),
        26: lambda b, k: (
            f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {r(b, k)}:50010 is added to "
            f"{b.id} size {b.size}"
        ),
        27: lambda b, k: (
            f"BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock request received for "
            f"{b.id} on {r(b, k)}:50010 size {b.size}"
        ),
        28: lambda b, k: (
            f"BLOCK* NameSystem.addStoredBlock: addStoredBlock request received for {b.id} on "
            f"{r(b, k)}:50010 size {b.size} But it does not belong to any file."
        ),
        29: lambda b, k: f"PendingReplicationMonitor timed out block {b.id}",
    }
    return [f.get(i) for i in range(max(f) + 1)]


def _hdfs_path(rng: random.Random, n_block: int) -> str:
    job = f"200811092030_{1 + n_block // 4000:04d}"
    task = rng.randrange(2400)
    x = rng.random()
    if x < 0.6:
        return f"/user/root/rand/_temporary/_task_{job}_m_{task:06d}_0/part-{task:05d}"
    if x < 0.9:
        return f"/user/root/sortrand/_temporary/_task_{job}_r_{task:06d}_0/part-{task:05d}"
    if x < 0.98:
        return f"/mnt/hadoop/mapred/system/job_{job}/job.{rng.choice(('jar', 'split', 'xml'))}"
    return f"/user/root/rand/_logs/history/ip-10-250-19-102.ec2.internal_1226291400491_job_{job}_conf.xml"


def _hdfs_chunks(
    n: int,
    rng: random.Random,
    ratio: float,
    model: _HdfsModel,
    labels: BinaryIO,
    stats: dict[str, int],
    concurrency: int = 256,
) -> Iterator[list[str]]:
    """Lines of ``n`` interleaved block sessions; anomalous block ids are written to ``labels``."""
    render = _hdfs_renderers(rng)
    heads, pid_pools = model.heads, model.pids
    cluster: dict[str, None] = {}  # the datanodes (HDFS_v1 had 203), distinct
    while len(cluster) < 203:
        cluster[f"10.{rng.choice((250, 251))}.{rng.randrange(256)}.{rng.randrange(1, 255)}"] = None
    nodes = tuple(cluster)
    randbelow, random_ = rng.randrange, rng.random
    free = n  # lines not yet promised to a block
    n_nodes = len(nodes)
    half = n_nodes // 2
    getrandbits = rng.getrandbits
    normal, abnormal = model.normal, model.abnormal

    def new_block() -> _Block:
        nonlocal free
        started = stats["blocks"]
        anomalous = random_() < ratio
        pool = abnormal if anomalous else normal
        seq = pool[int(random_() * len(pool))]
        if len(seq) > free:  # the last block: a normal sequence that fits, else a normal prefix
            anomalous = False
            j = bisect.bisect_right(model.normal_lens, free)
            seq = model.normal_by_len[randbelow(j)] if j else model.normal_by_len[0][:free]
        free -= len(seq)
        bits = getrandbits(64)
        v = (bits >> 1) | (1 << 57)  # in [1.4e17, 9.2e18]: 18 or 19 digits
        bid = f"blk_-{v}" if bits & 1 else f"blk_{v}"
        stats["blocks"] += 1
        if anomalous:
            stats["anomalous"] += 1
            labels.write(f"{bid}\n".encode())
        a = int(random_() * n_nodes)  # three distinct replicas
        b = a + 1 + int(random_() * (half - 1))
        c = b + 1 + int(random_() * (half - 1))
        reps = (nodes[a], nodes[b % n_nodes], nodes[c % n_nodes])
        size = "67108864" if random_() < 0.85 else str(1024 + int(random_() * 67107840))
        pid = 143 + started // 20 + int(random_() * 8)
        return _Block(
            bid,
            seq,
            reps,
            size,
            pid,
            _hdfs_path(rng, started),
            int(random_() * 64),
            nodes[int(random_() * n_nodes)],
        )

    active: list[_Block] = []
    while free > 0 and len(active) < concurrency:
        active.append(new_block())
    now = _HDFS_START
    buf: list[str] = []
    append = buf.append
    emitted = 0
    while emitted < n:  # one second at a time: about 80 lines a second as in HDFS_v1
        ts = now.strftime("%y%m%d %H%M%S")
        per = min(1 + int(random_() * 159), n - emitted)
        for _ in range(per):
            i = int(random_() * len(active))
            b = active[i]
            k = b.pos
            e = b.seq[k]
            pool = pid_pools[e]
            pid = pool[int(random_() * len(pool))] if pool else b.pid + (k & 3)
            append(f"{ts} {pid}{heads[e]}{render[e](b, k)}\n")  # type: ignore[misc]
            k += 1
            if k < b.n:
                b.pos = k
            elif free > 0:
                active[i] = new_block()
            else:
                active[i] = active[-1]
                active.pop()
        emitted += per
        now += timedelta(seconds=1 + (random_() < 0.03) * int(random_() * 10))
        if len(buf) >= CHUNK_LINES:
            yield buf
            buf = []
            append = buf.append
    if buf:
        yield buf


# --------------------------------------------------------------------------------------------------
# other systems: replay the 2k sample with fresh variable values

_SEG = re.compile(
    r"(?P<ip>\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b)|(?P<hex0x>\b0x[0-9A-Fa-f]+)|(?P<hex>[0-9A-Fa-f]+)|[^0-9A-Fa-f]+"
)
_DERIVED_FORMATS = (
    "%Y.%m.%d",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y%m%d",
    "%y%m%d",
    "%m/%d/%Y",
    "%b",
    "%a",
    "%d",
    "%m-%d",
    "%H:%M:%S",
    "%H%M%S",
    "%Y-%m-%d-%H.%M.%S.%f",
)
_FRAC = "\x1f"  # placeholder for the fraction of a second in a rendered time field
_EPOCH0 = datetime(1970, 1, 1)

Part = str | int | Callable[[], str]  # literal | index of a time field | fresh value


class _TimeField:
    """How one header field is rendered from the timestamp: strftime format or epoch seconds."""

    def __init__(self, fmt: str | None, *, nopad: bool = False, frac: int = 0, offset: int = 0) -> None:
        self.fmt, self.nopad, self.frac, self.offset = fmt, nopad, frac, offset
        self.spacepad = False  # syslog style day: " 9" / "14" after a single separator space

    def render(self, t: datetime) -> str:
        """The field at whole second ``t`` (``_FRAC`` marks where the fraction of a second goes)."""
        if self.fmt is None:
            s = str(int((t - _EPOCH0).total_seconds()) + self.offset)
            return s + "." + _FRAC if self.frac else s
        s = t.strftime(self.fmt.replace("%f", _FRAC))
        if (self.nopad or self.spacepad) and len(s) > 1 and s[0] == "0":
            s = s[1:]
        return s.rjust(2) if self.spacepad else s


def _strftime_frac(fmt: str, t: datetime) -> str:
    return t.replace(microsecond=0).strftime(fmt.replace("%f", _FRAC))


class _GenericModel:
    def __init__(self, lines: list[list[Part]], fields: list[_TimeField], start: datetime) -> None:
        self.lines, self.fields, self.start = lines, fields, start


def _fresh(text: str, rng: random.Random) -> list[Part]:
    """Parts that render ``text`` with every digit / hex run replaced by a fresh run of the same shape."""
    out: list[Part] = []
    rnd, gb = rng.random, rng.getrandbits
    for m in _SEG.finditer(text):
        s = m.group(0)
        if m.group("ip"):
            a, b = s.split(".")[:2]
            out.append(lambda p=f"{a}.{b}.": f"{p}{int(rnd() * 256)}.{1 + int(rnd() * 254)}")
            continue
        if m.group("hex0x"):
            out.append(s[:2])
            s = s[2:]
        elif not m.group("hex") or not any(c.isdigit() for c in s):
            out.append(s)
            continue
        n = len(s)
        if s.isdigit() and n <= 15:
            lo = 10 ** (n - 1) if n > 1 and s[0] != "0" else 0
            if lo:
                out.append(lambda lo=lo, w=10**n - lo: str(lo + int(rnd() * w)))
            else:
                out.append(lambda w=10**n, n=n: str(int(rnd() * w)).zfill(n))
        elif s.isdigit():
            out.append(lambda w=10**n, b=4 * n, n=n: str(gb(b) % w).zfill(n))
        else:
            upper = any(c in "ABCDEF" for c in s) and not any(c in "abcdef" for c in s)
            out.append(lambda b=4 * n, spec=f"0{n}{'X' if upper else 'x'}": format(gb(b), spec))
    return out


def _template_rx(template: str) -> re.Pattern[str] | None:
    parts = template.split("<*>")
    if len(parts) > 40:
        return None
    lits = [re.sub(r"(?:\\\s)+", r"\\s+", re.escape(p)) for p in parts]
    try:
        return re.compile(r"^\s*" + "(.*?)".join(lits) + r"\s*$", re.S)
    except re.error:
        return None


def _content_parts(content: str, template: str | None, rng: random.Random) -> list[Part]:
    rx = _template_rx(template) if template else None
    m = rx.match(content) if rx else None
    spans = (
        [m.span(g) for g in range(1, (m.lastindex or 0) + 1)]
        if m
        else [x.span() for x in re.finditer(r"\S*\d\S*", content)]
    )
    out: list[Part] = []
    pos = 0
    for a, b in spans:
        if a < pos or a == b:
            continue
        out.append(content[pos:a])
        out.extend(_fresh(content[a:b], rng))
        pos = b
    out.append(content[pos:])
    return out


def _parse_ts(values: list[str], fmt: str) -> datetime | None:
    text = " ".join(values)
    try:
        if fmt == "epoch":
            return datetime.fromtimestamp(float(text), tz=timezone.utc).replace(tzinfo=None)
        return datetime.strptime(text, fmt)
    except (ValueError, OverflowError, OSError):
        return None


def _learn_time_fields(
    names: list[str], rows: list[dict[str, str]], ts_fields: list[str], fmt: str
) -> dict[str, _TimeField]:
    """Time fields of the header: the configured ones and any other field derived from the timestamp."""
    step = max(1, len(rows) // 400)  # a spread-out subset is enough to learn from
    pairs = [(r, t) for r in rows[::step] if (t := _parse_ts([r[f] for f in ts_fields], fmt)) is not None]
    if not pairs:
        return {}
    out: dict[str, _TimeField] = {}
    first = pairs[0][0]
    if fmt == "epoch":
        if len(ts_fields) == 1:
            v = first[ts_fields[0]]
            out[ts_fields[0]] = _TimeField(None, frac=len(v.split(".")[1]) if "." in v else 0)
        return out
    # split the format into one piece per configured field (fields are joined by single spaces)
    tokens = fmt.split(" ")
    counts = [first[f].count(" ") + 1 for f in ts_fields]
    if sum(counts) != len(tokens):
        return {}
    pieces, i = [], 0
    for c in counts:
        pieces.append(" ".join(tokens[i : i + c]))
        i += c
    for name, piece in zip(ts_fields, pieces, strict=True):
        out[name] = _fit(piece, [(r[name], t) for r, t in pairs], required=True)  # type: ignore[assignment]
    for name in names:
        if name in out or name == "Content":
            continue
        samples = [(r[name], t) for r, t in pairs]
        for cand in _DERIVED_FORMATS:
            tf = _fit(cand, samples, required=False)
            if tf is not None:
                out[name] = tf
                break
        else:
            tf = _fit_epoch(samples)
            if tf is not None:
                out[name] = tf
    return out


def _fit(fmt: str, samples: list[tuple[str, datetime]], required: bool) -> _TimeField | None:
    """A field rendered with ``fmt`` if it reproduces the sample values (or when ``required``)."""
    v0, t0 = samples[0]
    frac = 0
    if "%f" in fmt:
        full = t0.strftime(fmt)
        frac = min(6, max(1, 6 - (len(full) - len(v0))))
    plain, nopad = 0, 0
    for v, t in samples:
        s = _strftime_frac(fmt, t).replace(_FRAC, f"{t.microsecond:06d}"[:frac])
        plain += s == v
        nopad += s[1:] == v and s[0] == "0"
    if not required and max(plain, nopad) < 0.9 * len(samples):
        return None
    return _TimeField(fmt, nopad=nopad > plain, frac=frac)


def _fit_epoch(samples: list[tuple[str, datetime]]) -> _TimeField | None:
    if not all(v.isdigit() and 8 <= len(v) <= 11 for v, _ in samples):
        return None
    offsets = Counter(int(v) - int((t - _EPOCH0).total_seconds()) for v, t in samples)
    best, _ = offsets.most_common(1)[0]
    near = sum(c for off, c in offsets.items() if abs(off - best) <= 3600)
    return _TimeField(None, offset=best) if near >= 0.9 * len(samples) else None


def _read_text_lines(path: Path) -> list[str]:
    with gzip.open(path, "rb") as fh:
        return [b.decode("utf-8", errors="replace").rstrip("\r\n") for b in fh]


@functools.lru_cache(maxsize=8)
def _generic_sample(system: str, data: Path) -> tuple[Any, list[str], list[str | None]]:
    cfg = load_system(system)  # ConfigError (a ValueError) naming the known systems when unknown
    log = data / "loghub_2k" / system / f"{system}_2k.log.gz"
    if not log.exists():
        raise FileNotFoundError(f"no shipped sample for system {system!r}: {log} does not exist")
    lines = _read_text_lines(log)
    templates: list[str | None] = [None] * len(lines)
    structured = data / "loghub_2k" / system / f"{system}_2k.log_structured_corrected.csv.gz"
    if structured.exists():
        with gzip.open(structured, "rt", encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    idx = int(row.get("LineId") or 0) - 1
                except ValueError:
                    continue
                if 0 <= idx < len(lines):
                    templates[idx] = row.get("EventTemplate")
    return cfg, lines, templates


def _generic_model(system: str, data: Path) -> _GenericModel:
    cfg, lines, templates = _generic_sample(system, data)
    rx = format_regex(cfg.log_format)
    names = format_fields(cfg.log_format)
    matches = [(m, t) for line, t in zip(lines, templates, strict=True) if (m := rx.match(line))]
    if not matches:
        raise ValueError(f"no line of the {system} sample matches its log_format {cfg.log_format!r}")
    rows = [{k: v or "" for k, v in m.groupdict().items()} for m, _ in matches]
    tf = _learn_time_fields(names, rows, cfg.timestamp.fields, cfg.timestamp.format) if cfg.timestamp else {}
    order = list(tf)
    start = next(
        (
            t
            for r in rows
            if cfg.timestamp and (t := _parse_ts([r[f] for f in cfg.timestamp.fields], cfg.timestamp.format))
        ),
        _EPOCH0,
    )
    for name, f in tf.items():  # "Jun  9" / "Jun 14": a one-digit field after two spaces
        f.spacepad = f.fmt is not None and any(
            m.end(name) - m.start(name) == 1 and m.string[max(0, m.start(name) - 2) : m.start(name)] == "  "
            for m, _ in matches
        )
    model_lines: list[list[Any]] = []
    for m, template in matches:
        line, pos, parts = m.string, 0, []
        for name in names:
            a, b = m.span(name)
            if a < 0:
                continue
            parts.append(line[pos:a])
            if name == "Content":
                parts.append(("content", line[a:b], template))
            elif name in tf:
                if tf[name].spacepad and parts[-1].endswith(" "):
                    parts[-1] = parts[-1].rstrip(" ") + " "
                parts.append(order.index(name))
            else:
                parts.append(line[a:b])
            pos = b
        parts.append(line[pos:])
        model_lines.append(parts)
    return _GenericModel(model_lines, [tf[n] for n in order], start)


def _bind(lines: list[list[Any]], rng: random.Random) -> list[list[Part]]:
    """Compile each sample line into literal / time-field / fresh-value parts using ``rng``."""
    out: list[list[Part]] = []
    for parts in lines:
        flat: list[Part] = []
        for p in parts:
            items = _content_parts(p[1], p[2], rng) if isinstance(p, tuple) else [p]
            for it in items:
                if isinstance(it, str) and flat and isinstance(flat[-1], str):
                    flat[-1] += it
                elif it != "":
                    flat.append(it)
        if flat and isinstance(flat[-1], str):
            flat[-1] += "\n"
        else:
            flat.append("\n")
        out.append(flat)
    return out


def _generic_chunks(n: int, rng: random.Random, model: _GenericModel) -> Iterator[list[str]]:
    lines = _bind(model.lines, rng)
    fields = model.fields
    randbelow = rng.randrange
    t_us = 0
    sec = -1
    vals: list[str] = []
    fracs = [(i, f.frac) for i, f in enumerate(fields) if f.frac]
    buf: list[str] = []
    emitted = 0
    while emitted < n:
        t_us += randbelow(100_000)  # about 20 lines a second
        if t_us // 1_000_000 != sec:
            sec = t_us // 1_000_000
            base = [f.render(model.start + timedelta(seconds=sec)) for f in fields]
        vals = base
        if fracs:
            us = f"{t_us % 1_000_000:06d}"
            vals = list(base)
            for i, w in fracs:
                vals[i] = base[i].replace(_FRAC, us[:w])
        parts = lines[randbelow(len(lines))]
        buf.append(
            "".join([p if p.__class__ is str else vals[p] if p.__class__ is int else p() for p in parts])
        )  # type: ignore[misc,index,operator]
        emitted += 1
        if len(buf) >= CHUNK_LINES:
            yield buf
            buf = []
    if buf:
        yield buf
