"""Label-free baseline: a window is as anomalous as the most severe word its events' messages use.

The classic first rule of log monitoring (grep for "error", "fail", "fatal"), read on the severity scale: each
event's template (the masked message) is searched, case-insensitively and as whole words, for the words of
:data:`WORDS`, and the event takes the most severe level they name (fatal 1.0, error 0.75, warn 0.4; none: info,
0.1), so that at the shared threshold (0.5) it is severity's rule "error or worse", read from the message where the
system writes no level field. The lists are the level names of :data:`fusionlog.events.DEFAULT_LEVELS` (their
multi-letter spellings) and general words of failure; they name no system's events. Whole words only: an identifier
(``CBS_E_INVALID_ITEM``, ``sendSyncFailedBroadcast``) or a longer word ("ALERTs", "ASSERTED") is not a match, and no
negation is read ("No temperature error" matches): a baseline, and a view that votes only beside the LLM's reading of
the same message.

In the fusion it stands in for ``severity`` where the level field tells the target's windows nothing (no line logs a
level, or every line the same one) and its windows are single messages or a few (not sessions): there the LLM's
event view would otherwise decide alone (``fusionlog.methods.fused``).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register
from fusionlog.methods.llm_events import window_max
from fusionlog.methods.severity import SCORE

WORDS: dict[str, tuple[str, ...]] = {
    "fatal": ("fatal", "failure", "critical", "crit", "emerg", "emergency", "alert", "panic", "dpanic", "assert"),
    "error": ("severe", "error", "errors", "err", "fail", "fails", "failed", "failing", "fault", "faults",
              "exception", "exceptions", "abort", "aborted", "aborting", "denied", "refused", "timeout",
              "timed out", "unable", "cannot", "can't", "could not", "couldn't", "corrupt", "corrupted",
              "corruption", "invalid", "illegal", "unreachable", "lost", "dead", "killed", "crash", "crashed",
              "segfault"),
    "warn": ("warn", "warning", "warnings"),
}
_PATTERNS = {lv: re.compile(r"(?<![\w'])(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ws)
                            + r")(?![\w'])", re.IGNORECASE) for lv, ws in WORDS.items()}


def word_level(text: str) -> str:
    """fatal | error | warn | info: the most severe level ``text``'s words name (info where none does)."""
    for lv in ("fatal", "error", "warn"):
        if _PATTERNS[lv].search(text or ""):
            return lv
    return "info"


def event_word_scores(templates: dict[int, str]) -> dict[int, float]:
    """Each event's score on the severity scale from its template's words."""
    return {t: SCORE[word_level(text)] for t, text in templates.items()}


def keyword_scores(template_ids: list[list[int]], templates: dict[int, str]) -> np.ndarray:
    """Each window's most severe event by its words (info for a window of unknown events)."""
    s = window_max(template_ids, event_word_scores(templates))
    return np.nan_to_num(s, nan=SCORE["info"])


@register("keywords")
class Keywords(Method):
    """The most severe word among the window's events' messages (severity's rule, read from the text)."""

    baseline = True
    cut = "an event's message names error or worse (error, fail, exception, fatal, panic ...: whole words)"

    def hash_inputs(self, exp: object) -> object:
        return {"words": WORDS, "score": SCORE, "match": "whole-words-v1"}

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.events import read_events

        ev = read_events(art.run, art.target)
        templates = dict(zip(ev["template_id"].to_pylist(), ev["template"].to_pylist(), strict=True))
        return art.table(keyword_scores(art.template_ids(), templates), "keywords")
