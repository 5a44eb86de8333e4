"""Parse one decoded log line: header fields, timestamp, masked content, session keys, line label."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

from fusionlog.config import LineFieldLabels, SystemConfig
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


class LineParser:
    """Turns a line of text into a :class:`ParsedLine`, or ``None`` when the header does not match."""

    def __init__(self, system: SystemConfig, mask_cache_size: int = 200_000) -> None:
        self.rx = format_regex(system.log_format)
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
        labels = system.labels
        self.label_field = labels.field if isinstance(labels, LineFieldLabels) else None
        self.normal_values = set(labels.normal_values) if isinstance(labels, LineFieldLabels) else set()

    def timestamp(self, text: str) -> datetime | None:
        hit = self._ts_cache.get(text, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        try:
            if self.ts_format == "epoch":
                ts: datetime | None = datetime.fromtimestamp(float(text), tz=timezone.utc).replace(tzinfo=None)
            else:
                ts = datetime.strptime(text, self.ts_format)  # type: ignore[arg-type]
        except (ValueError, OverflowError, OSError):
            ts = None
        if len(self._ts_cache) >= 100_000:
            self._ts_cache.clear()
        self._ts_cache[text] = ts
        return ts

    @staticmethod
    def _keys(rules: list[tuple[re.Pattern[str], bool, str | None]], text: str) -> list[str]:
        for rx, take_all, fmt in rules:
            matches = list(rx.finditer(text)) if take_all else [m for m in [rx.search(text)] if m]
            if matches:
                keys = [m.group(1) if m.groups() else m.group(0) for m in matches]
                if fmt:
                    keys = [fmt.format(k) for k in keys]
                return list(dict.fromkeys(keys))
        return []

    def path_sessions_of(self, path: str) -> list[str]:
        """Session keys taken from a file path (the same for every line of the file)."""
        return self._keys(self.path_sessions, path)

    def parse(self, line: str, path_sessions: list[str] | None = None) -> ParsedLine | None:
        m = self.rx.match(line)
        if m is None:
            return None
        g = m.groupdict()
        content = g["Content"]
        ts = self.timestamp(" ".join(g[f] for f in self.ts_fields)) if self.ts_format else None
        sessions = self._keys(self.content_sessions, content) if self.content_sessions else []
        if not sessions and path_sessions:
            sessions = path_sessions
        label = None
        if self.label_field is not None:
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
