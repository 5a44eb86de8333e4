"""The LLM's event judgment as a detector: a window is as anomalous as its most anomalous event, by the LLM's
calibrated P(yes) to "does this event report a failure or an abnormal condition?" (``fusionlog.llm.judge``:
calibrated by a two-component mixture over the system's own events). Where the judge stage triaged the events that
question calls failures (``fusionlog.llm.triage``: the system's fault or a user's or client's problem), such an
event scores the lower of its two readings: its calibrated P(yes), and the share of the system's fault among the
two kinds of failure, so that a failure more likely a user's than the system's falls below the cut; a share within
0.01 of even odds is undecided and lowers nothing (:func:`triaged`)."""

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


def triaged(event_score: dict[int, float | None], system_share: dict[int, float]) -> dict[int, float | None]:
    """Each event's score, lowered to its system share where it was triaged (the weaker of the two readings); a
    share within :data:`fusionlog.llm.triage.UNDECIDED` of 0.5 leaves the event as the yes/no question scored it
    (the triage is undecided there, and an undecided triage does not overrule the question)."""
    from fusionlog.llm.triage import UNDECIDED

    return {t: v if v is None or t not in system_share or abs(system_share[t] - 0.5) < UNDECIDED
            else min(v, system_share[t]) for t, v in event_score.items()}


@register("llm-events")
class LLMEvents(Method):
    """The highest LLM event score among the window's events (triaged where the judge stage triaged)."""

    needs = Needs(judge=True)
    cut = ("an event in the upper of two groups of the system's events by the LLM's P(yes) (a two-component "
           "mixture; posterior >= 0.5) and, where triaged, more likely the system's fault than a user's")

    def hash_inputs(self, exp: object) -> object:
        from fusionlog.llm.triage import UNDECIDED

        return {"triage_undecided": UNDECIDED}

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.llm.judge import read_event_scores
        from fusionlog.llm.triage import read_triage

        events = triaged(read_event_scores(art.run, art.target), read_triage(art.run, art.target))
        s = window_max(art.template_ids(), events)
        return art.table(np.nan_to_num(s, nan=0.0), "llm-events")
