"""The LLM's event judgment as a detector: a window is as anomalous as its most anomalous event, by the LLM's
calibrated P(yes) to "does this event report a failure or an abnormal condition?" (``fusionlog.llm.judge``:
calibrated by a two-component mixture over the system's own events)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, Needs, register


def window_max(template_ids: list[list[int]], event_score: dict[int, float | None]) -> np.ndarray:
    """Each window's highest event score (NaN when the LLM abstained on all its events)."""
    out = np.full(len(template_ids), np.nan)
    for i, ids in enumerate(template_ids):
        s = [v for t in set(ids) if (v := event_score.get(t)) is not None]
        if s:
            out[i] = max(s)
    return out


@register("llm-events")
class LLMEvents(Method):
    """The highest calibrated LLM event score among the window's events."""

    needs = Needs(judge=True)
    cut = ("an event in the upper of two groups of the system's events by the LLM's P(yes) (a two-component "
           "mixture; posterior >= 0.5)")

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.llm.judge import read_event_scores

        s = window_max(art.template_ids(), read_event_scores(art.run, art.target))
        return art.table(np.nan_to_num(s, nan=0.0), "llm-events")
