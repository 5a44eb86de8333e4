"""Parse one decoded log line: header fields, timestamp, masked content, session keys, line label."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import NamedTuple

from fusionlog.config import EnvelopeConfig, LineFieldLabels, SystemConfig
from fusionlog.ingest.header import format_regex
from fusionlog.ingest.mask import Masker


class ParsedLine(NamedTuple):
    ts: datetime | None
    level: str | None
    component: str | None
    node: str | None
    content: str
    masked: str
    sessions: list[str]
    label: int | None  # line-level label: 1 anomalous, 0 normal, None unknown


EPOCH_SCALE = {"epoch": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
ISO = ("iso8601", "rfc3339")
_SUBMICRO = re.compile(r"([.,:]\d{6})\d{1,3}(?!\d)")  # a fraction of a second with more than 6 digits
_CRI = re.compile(r"^(\S+) (stdout|stderr) ([FP])(?: (.*))?$", re.S)


def iso_timestamp(text: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 time (``T`` or a space, any fraction, ``Z`` or an offset) as naive UTC, or ``None``."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def _json_path(obj: dict, path: str) -> object:
    """The value at ``path`` in a JSON object: the key whole, else keys joined by dots; ``None`` where absent."""
    if path in obj:
        return obj[path]
    cur: object = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None if value is None else json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class Envelope:
    """Unwraps a JSON or CRI line (:class:`fusionlog.config.EnvelopeConfig`): the wrapped message and the
    envelope's header fields, or ``None`` when the line is not such a record."""

    def __init__(self, cfg: EnvelopeConfig) -> None:
        self.json = cfg.format == "json"
        self.message = cfg.message_path
        self.fields = dict(cfg.fields)

    def unwrap(self, line: str) -> tuple[str, dict[str, str | None]] | None:
        if self.json:
            try:
                obj = json.loads(line)
            except ValueError:
                return None
            if not isinstance(obj, dict):
                return None
            msg = _text(_json_path(obj, self.message))
            got = {name: _text(_json_path(obj, path)) for name, path in self.fields.items()}
        else:
            m = _CRI.match(line)
            if m is None:
                return None
            parts = {"time": m.group(1), "stream": m.group(2), "tag": m.group(3)}
            msg = m.group(4) or ""
            got = {name: parts[part] for name, part in self.fields.items()}
        if msg is None:
            return None
        return msg.removesuffix("\n").removesuffix("\r"), got


class LineParser:
    """Turns a line of text into a :class:`ParsedLine`, or ``None`` when the header does not match."""

    def __init__(self, system: SystemConfig, mask_cache_size: int = 200_000) -> None:
        self.rx = format_regex(system.log_format)
        self.envelope = Envelope(system.envelope) if system.envelope else None
        self.masker = Masker(system.masks, mask_cache_size)
        self.level = system.fields.get("level")
        self.component = system.fields.get("component")
        self.node = system.fields.get("node")
        self.ts_fields = system.timestamp.fields if system.timestamp else []
        self.ts_format = system.timestamp.format if system.timestamp else None
        self._ts_cache: dict[str, datetime | None] = {}
        self.content_sessions = [
            (re.compile(s.pattern), s.all, s.format) for s in system.sessions if s.source == "content"
        ]
        self.path_sessions = [
            (re.compile(s.pattern), s.all, s.format) for s in system.sessions if s.source == "path"
        ]
        self.field_sessions = [
            (s.field, [(re.compile(s.pattern), s.all, s.format)]) for s in system.sessions if s.source == "field"
        ]
        labels = system.labels
        self.label_field = labels.field if isinstance(labels, LineFieldLabels) else None
        self.normal_values = set(labels.normal_values) if isinstance(labels, LineFieldLabels) else set()

    def timestamp(self, text: str) -> datetime | None:
        fmt = self.ts_format
        if fmt in ISO:  # distinct per line in practice: no cache
            return iso_timestamp(text)
        hit = self._ts_cache.get(text, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        try:
            if fmt in EPOCH_SCALE:
                secs = float(text) / EPOCH_SCALE[fmt]  # type: ignore[index]
                ts: datetime | None = datetime.fromtimestamp(secs, tz=timezone.utc).replace(tzinfo=None)
            else:
                ts = self._strptime(text)
        except (ValueError, OverflowError, OSError):
            ts = None
        if len(self._ts_cache) >= 100_000:
            self._ts_cache.clear()
        self._ts_cache[text] = ts
        return ts

    def _strptime(self, text: str) -> datetime:
        try:
            return datetime.strptime(text, self.ts_format)  # type: ignore[arg-type]
        except ValueError:
            cut = _SUBMICRO.sub(r"\1", text) if "%f" in self.ts_format else text  # type: ignore[operator]
            if cut == text:
                raise
            return datetime.strptime(cut, self.ts_format)  # type: ignore[arg-type]

    @staticmethod
    def _keys(rules: list[tuple[re.Pattern[str], bool, str | None]], text: str) -> list[str]:
        """Keys of the first rule that matches: group 1 (or the whole match), unique, in order."""
        for rx, take_all, fmt in rules:
            if take_all and rx.groups <= 1:
                keys = rx.findall(text)
            else:
                ms = list(rx.finditer(text)) if take_all else [m for m in [rx.search(text)] if m]
                keys = [m.group(1) if rx.groups else m.group(0) for m in ms]
            if keys:
                if fmt:
                    keys = [fmt.format(k) for k in keys]
                return keys if len(keys) == 1 else list(dict.fromkeys(keys))
        return []

    def path_sessions_of(self, path: str) -> list[str]:
        """Session keys taken from a file path (the same for every line of the file)."""
        return self._keys(self.path_sessions, path)

    def parse(self, line: str, path_sessions: list[str] | None = None) -> ParsedLine | None:
        env: dict[str, str | None] = {}
        if self.envelope is not None:
            got = self.envelope.unwrap(line)
            if got is None:
                return None
            line, env = got
        m = self.rx.match(line)
        if m is None:
            return None
        g = {**env, **m.groupdict()}
        content = g["Content"]
        ts = None
        if self.ts_format:
            parts = [g[f] for f in self.ts_fields]
            ts = None if any(p is None for p in parts) else self.timestamp(" ".join(parts))  # type: ignore[arg-type]
        sessions = self._keys(self.content_sessions, content) if self.content_sessions else []
        for name, rules in self.field_sessions:
            if sessions:
                break
            if g.get(name):
                sessions = self._keys(rules, g[name])  # type: ignore[arg-type]
        if not sessions and path_sessions:
            sessions = path_sessions
        label = None
        if self.label_field is not None and g[self.label_field] is not None:
            label = 0 if g[self.label_field] in self.normal_values else 1
        return ParsedLine(
            ts,
            g[self.level] if self.level else None,
            g[self.component] if self.component else None,
            g[self.node] if self.node else None,
            content,
            self.masker.mask(content),
            sessions,
            label,
        )


class BatchParser:
    """Vectorized :class:`LineParser` over an Arrow array of lines (the hot path of the ingest).

    Header split, timestamps, labels and level/component/node run as Arrow kernels (RE2); masking
    and session keys run per line in Python (the masker caches per distinct token). Formats RE2
    cannot compile, JSON and CRI envelopes, sessions from header fields, and timestamps Arrow cannot
    parse, fall back to the per-line parser.
    """

    def __init__(self, system: SystemConfig, mask_cache_size: int = 200_000) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.line = LineParser(system, mask_cache_size)
        self.pattern: str | None = self.line.rx.pattern
        try:
            pc.extract_regex(pa.array(["x"]), self.pattern)
        except pa.ArrowInvalid:
            self.pattern = None  # not RE2-compatible: per-line Python regex
        if self.line.envelope is not None or self.line.field_sessions:
            self.pattern = None  # JSON or CRI records, sessions from header fields: per line in Python
        fmt = self.line.ts_format
        self.vector_ts = bool(fmt) and "%" in fmt and "%f" not in fmt  # type: ignore[operator]

    def parse(self, lines, path_sessions: list[str], masked_only: bool = False):  # noqa: ANN001, ANN201
        """Parse a ``pa.StringArray``; returns (matched: BooleanArray, columns of the matched rows).

        ``masked_only``: only ``content`` and ``masked`` (a Python list), for the template scan.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        lp = self.line
        if self.pattern is None:
            return self._parse_python(lines, path_sessions)
        st = pc.extract_regex(lines, self.pattern)
        matched = st.is_valid()
        st = st.filter(matched)
        n = len(st)
        content = st.field("Content")
        if masked_only:
            mask = lp.masker.mask
            texts = content.to_pylist()
            return matched, {"content": texts, "masked": [mask(t) for t in texts]}
        cols: dict[str, object] = {}
        for key, name in (("level", lp.level), ("component", lp.component), ("node", lp.node)):
            cols[key] = st.field(name) if name else pa.nulls(n, pa.string())
        if lp.ts_format:
            parts = [st.field(f) for f in lp.ts_fields]
            joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")
            ts = None
            if self.vector_ts:
                ts = pc.strptime(joined, format=lp.ts_format, unit="us", error_is_null=True)
            if ts is None or ts.null_count == n and n:
                ts = pa.array([lp.timestamp(x) for x in joined.to_pylist()], pa.timestamp("us"))
            cols["ts"] = ts
        else:
            cols["ts"] = pa.nulls(n, pa.timestamp("us"))
        if lp.label_field:
            normal = pc.is_in(st.field(lp.label_field), value_set=pa.array(sorted(lp.normal_values)))
            cols["label"] = pc.if_else(normal, 0, 1).cast(pa.int8())
        else:
            cols["label"] = pa.nulls(n, pa.int8())
        texts = content.to_pylist()
        mask = lp.masker.mask
        cols["content"] = content
        cols["texts"] = texts
        cols["masked"] = [mask(t) for t in texts]
        if lp.content_sessions:
            keys = lp._keys
            rules = lp.content_sessions
            cols["sessions"] = pa.array(
                [keys(rules, t) or path_sessions for t in texts], pa.list_(pa.string())
            )
        else:
            cols["sessions"] = pa.array([path_sessions] * n, pa.list_(pa.string()))
        return matched, cols

    def _parse_python(self, lines, path_sessions: list[str]):  # noqa: ANN001, ANN202
        import pyarrow as pa

        parsed = [self.line.parse(t, path_sessions) if t is not None else None for t in lines.to_pylist()]
        matched = pa.array([p is not None for p in parsed])
        good = [p for p in parsed if p is not None]
        cols = {
            "ts": pa.array([p.ts for p in good], pa.timestamp("us")),
            "level": pa.array([p.level for p in good], pa.string()),
            "component": pa.array([p.component for p in good], pa.string()),
            "node": pa.array([p.node for p in good], pa.string()),
            "content": pa.array([p.content for p in good], pa.string()),
            "texts": [p.content for p in good],
            "masked": [p.masked for p in good],
            "sessions": pa.array([p.sessions for p in good], pa.list_(pa.string())),
            "label": pa.array([p.label for p in good], pa.int8()),
        }
        return matched, cols
