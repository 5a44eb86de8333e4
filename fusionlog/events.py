"""``events/``: one row per (system, template) — the evidence every later view reads about an event, computed from
the system's own lines and windows, with no labels:

system, template_id, template, count (lines), windows (the windows holding it), df (windows / all windows),
level (the most frequent normalised level of its lines), max_level (the most severe), level_mix and
component_mix (JSON {value: lines}), first_file / first_line / first_ts (where it first occurs).

Levels are normalised to fatal | error | warn | info | debug | unknown by :data:`DEFAULT_LEVELS` and a system's
``levels:`` map; event-sequence sets (no lines) say ``unknown``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.io import atomic_dir
from fusionlog.rundir import table_dir

SEVERITY = {"fatal": 4, "error": 3, "warn": 2, "info": 1, "debug": 0, "unknown": -1}
# common spellings across syslog (RFC 5424's names), log4j, Python, java.util.logging, zap, MySQL, Windows, RAS logs;
# the one-letter ones are Android logcat's and glog's (V D I W E F; logcat's A = assert)
DEFAULT_LEVELS = {
    "fatal": "fatal", "failure": "fatal", "critical": "fatal", "crit": "fatal", "emerg": "fatal",
    "emergency": "fatal", "alert": "fatal", "panic": "fatal", "dpanic": "fatal", "f": "fatal", "a": "fatal",
    "assert": "fatal", "severe": "error", "error": "error", "err": "error", "e": "error", "warn": "warn",
    "warning": "warn", "w": "warn", "notice": "info", "note": "info", "info": "info", "i": "info",
    "information": "info", "informational": "info", "config": "info", "debug": "debug",
    "d": "debug", "trace": "debug", "fine": "debug", "finer": "debug", "finest": "debug", "verbose": "debug",
    "v": "debug",
}
EVENTS = pa.schema([
    ("system", pa.string()), ("template_id", pa.int64()), ("template", pa.string()), ("count", pa.int64()),
    ("windows", pa.int64()), ("df", pa.float64()), ("level", pa.string()), ("max_level", pa.string()),
    ("level_mix", pa.string()), ("component_mix", pa.string()), ("first_file", pa.string()),
    ("first_line", pa.int64()), ("first_ts", pa.timestamp("us")),
])


def normalize_level(raw: str | None, levels: dict[str, str] | None = None) -> str:
    """fatal | error | warn | info | debug | unknown for a raw level value."""
    if raw is None:
        return "unknown"
    key = raw.strip().lower()
    mine = {k.lower(): v for k, v in (levels or {}).items()}
    return mine.get(key) or DEFAULT_LEVELS.get(key, "unknown")


def build_events(run: Path, system: str, levels: dict[str, str] | None = None) -> pa.Table:
    """The ``events`` rows of ``system`` (see the module docstring)."""
    run = Path(run)
    tpl = pq.read_table(table_dir(run, "templates", system), columns=["template_id", "template", "count"])
    win = pq.read_table(table_dir(run, "windows", system), columns=["template_ids"])
    n_windows = max(win.num_rows, 1)
    holding: Counter[int] = Counter()
    for ids in win["template_ids"].to_pylist():
        holding.update(set(ids))
    lvl: dict[int, Counter] = {}
    comp: dict[int, Counter] = {}
    first: dict[int, tuple] = {}
    ldir = table_dir(run, "lines", system)
    if ldir.is_dir():  # raw logs; event-sequence sets have no lines
        lines = pq.read_table(ldir, columns=["template_id", "level", "component", "file", "line_no", "ts"])
        lines = lines.sort_by([("file", "ascending"), ("line_no", "ascending")])
        cols = [lines[c].to_pylist() for c in ("template_id", "level", "component", "file", "line_no", "ts")]
        for tid, lv, cp, f, ln, ts in zip(*cols, strict=True):
            if tid is None:
                continue
            lvl.setdefault(tid, Counter())[normalize_level(lv, levels)] += 1
            if cp is not None:
                comp.setdefault(tid, Counter())[cp] += 1
            if tid not in first or (ts is not None and first[tid][2] is not None and ts < first[tid][2]):
                first[tid] = (f, ln, ts)
    rows: dict[str, list] = {k: [] for k in EVENTS.names}
    for tid, text, count in zip(*(tpl[c].to_pylist() for c in ("template_id", "template", "count")), strict=True):
        mix = lvl.get(tid) or Counter({"unknown": count})
        f, ln, ts = first.get(tid, (None, None, None))
        for k, v in (("system", system), ("template_id", tid), ("template", text), ("count", count),
                     ("windows", holding.get(tid, 0)), ("df", holding.get(tid, 0) / n_windows),
                     ("level", mix.most_common(1)[0][0]), ("max_level", max(mix, key=SEVERITY.__getitem__)),
                     ("level_mix", json.dumps(dict(mix.most_common()))),
                     ("component_mix", json.dumps(dict(comp.get(tid, Counter()).most_common(5)))),
                     ("first_file", f), ("first_line", ln), ("first_ts", ts)):
            rows[k].append(v)
    return pa.table(rows, schema=EVENTS)


def write_events(run: Path, system: str, levels: dict[str, str] | None = None) -> int:
    """Build and write ``events/system=<system>``; returns the number of events."""
    table = build_events(run, system, levels)
    with atomic_dir(table_dir(run, "events", system)) as tmp:
        tmp.mkdir()  # the partition names the system (as in every partitioned table): not a column of the file
        pq.write_table(table.drop_columns(["system"]), tmp / "part-0.parquet")
    return table.num_rows


def read_events(run: Path, system: str) -> pa.Table:
    """``events/system=<system>`` (an error says to run the events stage when it is missing)."""
    d = table_dir(Path(run), "events", system)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} not found: run the events stage (`fusionlog run`) first")
    t = pq.read_table(d)
    t = t.append_column("system", pa.array([system] * t.num_rows, pa.string()))
    return t.select(EVENTS.names).cast(EVENTS)
