"""Log formats in the loghub notation (``<Date> <Time> <Level> <Component>: <Content>``) as regexes."""

from __future__ import annotations

import re

_FIELD = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


def format_fields(log_format: str) -> list[str]:
    """Names of the ``<Field>`` placeholders, in order."""
    return _FIELD.findall(log_format)


def format_regex(log_format: str) -> re.Pattern[str]:
    """Compile a loghub log format into an anchored regex with one named group per field.

    Text between placeholders is a regex fragment (so ``\\[`` and ``(...)?`` work as in loghub); runs of
    spaces match any run of whitespace. Every field is lazy except the last (``Content``), which takes
    the rest of the line.
    """
    parts = re.split(r"(<[A-Za-z_][A-Za-z0-9_]*>)", log_format)
    out: list[str] = []
    for part in parts:
        m = _FIELD.fullmatch(part)
        if m:
            name = m.group(1)
            out.append(f"(?P<{name}>.*)" if name == "Content" else f"(?P<{name}>.*?)")
        elif part:
            out.append(re.sub(" +", r"\\s+", part))
    try:
        return re.compile("^" + "".join(out) + "$")
    except re.error as exc:
        raise ValueError(f"log_format {log_format!r} is not a valid pattern: {exc}") from exc
