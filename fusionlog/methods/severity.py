"""Label-free baseline: a window is as anomalous as the most severe level its events are logged at.

Each event's level is the most frequent normalised level of its lines (``events/``: fatal, error, warn, info,
debug, unknown; the system's ``levels:`` map and :data:`fusionlog.events.DEFAULT_LEVELS`). A window scores the
highest of its events: fatal 1.0, error 0.75, warn 0.4, info 0.1, debug 0.05, unknown 0.0; at the shared
threshold (0.5) that is the operator's rule "error or worse". Systems without levels score 0 everywhere (the
table says so: the baseline exists only where levels exist).

``severity-top`` ranks the same way and cuts at the most severe level the system's events use ("Level is FATAL"
on a system that logs FATAL, "ERROR" on one whose worst is ERROR, nothing where it is below WARN): the stricter
operator's rule, a second label-free baseline. The fusion's severity view keeps "error or worse"; which of the
two cuts suits a target cannot be told without its labels (docs/pipeline.md has both measured).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register

SCORE = {"fatal": 1.0, "error": 0.75, "warn": 0.4, "info": 0.1, "debug": 0.05, "unknown": 0.0}


def severity_scores(template_ids: list[list[int]], level: dict[int, str]) -> np.ndarray:
    """The highest level score of each window's events."""
    return np.array([max((SCORE[level.get(t, "unknown")] for t in set(ids)), default=0.0) for ids in template_ids],
                    np.float32)


@register("severity")
class Severity(Method):
    """The most severe level among the window's events."""

    baseline = True
    cut = "an event logged at error or worse"

    def hash_inputs(self, exp: object) -> object:
        return {"score": SCORE}

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.events import read_events, severity_by_template

        return art.table(severity_scores(art.template_ids(), severity_by_template(read_events(art.run, art.target))),
                         "severity")


def top_level_cut(level: dict[int, str]) -> float:
    """The score of the most severe level among the system's events; above every score (no flag) where that level
    is below ``warn``: a system that logs nothing worse than info has no level that reports trouble."""
    top = max((SCORE[v] for v in level.values()), default=0.0)
    return top if top >= SCORE["warn"] else 2.0


@register("severity-top")
class SeverityTop(Method):
    """The most severe level among the window's events, flagged only at the system's most severe level."""

    baseline = True
    cut = "an event logged at the most severe level the system's events use"

    def hash_inputs(self, exp: object) -> object:
        return {"score": SCORE, "cut": "top-level-v2"}

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.events import read_events, severity_by_template

        s = art.scores("severity")["score"].to_numpy()  # the same ranking: only the cut differs
        return art.table(s, "severity", labels=s >= top_level_cut(severity_by_template(read_events(art.run,
                                                                                                 art.target))))
