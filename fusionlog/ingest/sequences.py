"""Event-sequence datasets (``session,event ids`` + a headerless templates CSV) -> the same contracts.

As in the ait-aecid copies of loghub: event id k is line k (1-based) of the templates file. Each
sequence file has one label for all of its sessions (normal / anomalous / unknown). There are no
timestamps, so the split is by position: the first 60 % of each file's sessions train, and so on
(every file contributes to every split in its own order; nothing is shuffled).

A file may be sampled (``PATH:label:fraction``): a session is kept iff a hash of its id falls below
the fraction, so the same sessions are kept on every run. The ait HDFS normal file is a ~1 % sample
of HDFS's normal blocks; sampling the anomalous file at 1 % too restores HDFS's natural anomaly rate.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog import contracts
from fusionlog.io import atomic_dir
from fusionlog.rundir import table_dir

LABELS = {"normal": 0, "anomalous": 1, "unknown": None}


@dataclass
class SequenceResult:
    system: str
    templates: int
    windows: int = 0
    anomalous_windows: int = 0
    bad_lines: list[str] = field(default_factory=list)
    duplicates_across_files: int = 0
    sampled_out: int = 0  # sessions left out by a file's sampling fraction (read = kept + sampled out + bad)


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8"))


def parse_spec(spec: str) -> tuple[Path, int | None, float]:
    """``path:label[:fraction]`` (label normal|anomalous|unknown) -> (path, label, fraction)."""
    head, sep, last = spec.rpartition(":")
    fraction = 1.0
    try:
        fraction = float(last) if sep and last not in LABELS else 1.0
    except ValueError:
        pass  # not a number: reported below as a bad label
    else:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"sequence spec {spec!r}: the fraction must be in (0, 1]")
        if last not in LABELS:
            head, sep, last = head.rpartition(":")
    if not sep or last not in LABELS:
        raise ValueError(f"sequence spec {spec!r} must be PATH:normal|anomalous|unknown[:fraction]")
    return Path(head), LABELS[last], fraction


def keep(session: str, fraction: float) -> bool:
    """Deterministic sampling by session id."""
    if fraction >= 1.0:
        return True
    h = int.from_bytes(hashlib.blake2b(session.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


def ingest_sequences(
    system: str,
    templates_csv: Path,
    sequences: list[tuple[Path, int | None]] | list[tuple[Path, int | None, float]],
    out: Path,
    splits: dict[str, float] | None = None,
) -> SequenceResult:
    """Write ``templates/`` and ``windows/`` for an event-sequence dataset."""
    splits = splits or {"train": 0.6, "val": 0.2, "test": 0.2}
    if not templates_csv.exists():
        raise FileNotFoundError(f"templates file not found: {templates_csv}")
    tpl_lines = [ln.rstrip("\r\n") for ln in _open_text(templates_csv)]
    while tpl_lines and not tpl_lines[-1].strip():
        tpl_lines.pop()
    res = SequenceResult(system, len(tpl_lines))
    counts = [0] * (len(tpl_lines) + 1)
    cols: dict[str, list] = {n: [] for n in contracts.WINDOWS.names}
    seen: dict[str, int] = {}
    quarantine: list[tuple[str, int, bytes, str]] = []
    for path, label, *rest in sequences:
        fraction = rest[0] if rest else 1.0
        if not path.exists():
            raise FileNotFoundError(f"sequence file not found: {path}")
        rows = []
        for no, line in enumerate(_open_text(path), start=1):
            line = line.strip()
            if not line:
                continue
            sid, sep, events = line.partition(",")
            try:
                ids = [int(x) for x in events.split()]
                if not sep or not sid or any(i < 1 or i > len(tpl_lines) for i in ids):
                    raise ValueError("event id out of range" if sep else "no comma")
            except ValueError as exc:
                res.bad_lines.append(f"{path}:{no}: {exc}: {line[:80]!r}")
                quarantine.append((str(path), no, line.encode("utf-8"), f"bad_sequence: {exc}"))
                continue
            if not keep(sid, fraction):
                res.sampled_out += 1
                continue
            rows.append((sid, ids, no))
        p_train = splits.get("train", 0.0)
        p_val = p_train + splits.get("val", 0.0)
        for k, (sid, ids, no) in enumerate(rows):
            frac = k / max(1, len(rows))
            if sid in seen:
                res.duplicates_across_files += 1
            seen[sid] = 1
            for i in ids:
                counts[i] += 1
            cols["window_id"].append(sid)
            cols["session"].append(sid)
            cols["first_file"].append(str(path))
            cols["first_line"].append(no)
            cols["last_file"].append(str(path))
            cols["last_line"].append(no)
            cols["start_ts"].append(None)
            cols["end_ts"].append(None)
            cols["n_lines"].append(len(ids))
            cols["template_ids"].append(ids)
            cols["levels"].append(None)  # event ids only: no levels
            cols["label"].append(label)
            cols["split"].append("train" if frac < p_train else "val" if frac < p_val else "test")
    windows = pa.table(cols, schema=contracts.WINDOWS)
    res.windows = windows.num_rows
    res.anomalous_windows = sum(1 for x in cols["label"] if x == 1)
    tpl = pa.table(
        {
            "template_id": list(range(1, len(tpl_lines) + 1)),
            "template": tpl_lines,
            "count": counts[1:],
        },
        schema=contracts.TEMPLATES,
    )
    quar = pa.table(
        [pa.array([q[i] for q in quarantine], t.type) for i, t in enumerate(contracts.QUARANTINE)],
        schema=contracts.QUARANTINE,
    )
    for table, name in ((tpl, "templates"), (windows, "windows"), (quar, "quarantine")):
        with atomic_dir(table_dir(out, name, system)) as tmp:
            tmp.mkdir()
            pq.write_table(table, tmp / "part-0.parquet")
    return res
