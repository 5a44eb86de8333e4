"""Masking of variable parts of log messages, applied once per distinct token (cached)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fusionlog.config import MaskRule

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


def placeholders(rules: Sequence[MaskRule]) -> frozenset[str]:
    """The named placeholders (``<NUM>``, ``<IP>``...) written by ``rules``' replacements.

    Named placeholders, unlike ``<*>``, count as matching tokens in Drain's similarity, so masked
    messages of one event still group together at a high ``sim_th``. A template token that holds one
    of them (or ``<*>``) is a parameter position.
    """
    return frozenset(p for r in rules for p in PLACEHOLDER.findall(r.replacement))


class Masker:
    """Apply mask rules to a message.

    Line-scope rules run first on the whole message. The message is then split on whitespace and each
    token goes through the token-scope rules; results are cached per distinct token (the cache is
    cleared when it reaches ``cache_size`` entries, so memory stays bounded). The masked message is
    the masked tokens joined by single spaces, which is also how Drain tokenizes it.
    """

    def __init__(self, rules: Sequence[MaskRule], cache_size: int = 200_000) -> None:
        self._line = [(re.compile(r.pattern), r.replacement) for r in rules if r.scope == "line"]
        self._token = [(re.compile(r.pattern), r.replacement) for r in rules if r.scope == "token"]
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self.placeholders = placeholders(rules)

    def mask_token(self, token: str) -> str:
        out = self._cache.get(token)
        if out is not None:
            return out
        out = token
        for rx, repl in self._token:
            out = rx.sub(repl, out)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[token] = out
        return out

    def mask(self, content: str) -> str:
        for rx, repl in self._line:
            content = rx.sub(repl, content)
        if not self._token:
            return " ".join(content.split())
        get = self._cache.get
        return " ".join([get(t) or self.mask_token(t) for t in content.split()])
