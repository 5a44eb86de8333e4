"""Label-free baseline: a window is anomalous when it holds an event the target's majority never logs.

The target's windows in time order (their start); the *majority* is the earliest of them that make up more than half
(``n // 2 + 1`` windows). An event is new when no window of the majority holds it, and a window holding a new event
is flagged: the system logs something it did not log for the first half of the period. A window's score is 1.0 when
it holds a new event, else ``0.5 * (1 - min_t share(t))`` with ``share(t)`` the share of the majority's windows
holding ``t`` (below 0.5, higher the rarer its least common event was: for PR-AUC). The majority's own windows hold
no new event by definition. Where the windows carry no time (an event-sequence set) the order is unknown, and the
order they were ingested in could follow their labels (normal files first), so nothing is flagged and the notes say
why. Reads no labels and names no system's events.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register
from fusionlog.methods.rarity import document_frequency


def new_event_scores(template_ids: list[list[int]], starts: list[object]) -> tuple[np.ndarray, set[int]] | None:
    """Score per window (see the module's docstring) from its template ids and its start (any comparable value;
    ties keep the given order), and the new events; None where a window has no start."""
    if any(s is None for s in starts):
        return None
    order = sorted(range(len(template_ids)), key=lambda k: starts[k])
    share = document_frequency([template_ids[k] for k in order[: len(order) // 2 + 1]])
    low = np.array([min((share.get(e, 0.0) for e in set(x)), default=1.0) for x in template_ids], np.float64)
    return np.where(low == 0.0, 1.0, 0.5 * (1.0 - low)), {e for x in template_ids for e in x} - set(share)


@register("new-events")
class NewEvents(Method):
    """Windows holding an event the earliest majority of the target's windows never holds."""

    baseline = True
    cut = "holds an event that none of the earliest majority (n // 2 + 1) of the target's windows holds"

    def hash_inputs(self, exp: object) -> object:
        return {"majority": "n // 2 + 1 earliest windows", "score": "v1"}

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.train.data import read_windows

        t = read_windows(art.run, art.target, ["window_id", "start_ts"])
        start = dict(zip(t["window_id"].to_pylist(), t["start_ts"].cast(pa.int64()).to_pylist(), strict=True))
        tpl = art.template_ids()
        got = new_event_scores(tpl, [start[i] for i in art.ids]) if art.ids else None
        if got is None:
            art.notes[self.name] = {"flagged": 0, "why": "the windows carry no time: which came first is unknown"}
            return art.table(np.zeros(len(art.ids)), self.name, labels=np.zeros(len(art.ids), bool))
        s, new = got
        art.notes[self.name] = {"flagged": int((s == 1.0).sum()), "majority_windows": len(art.ids) // 2 + 1,
                                "new_events": len(new)}
        return art.table(s, self.name, labels=s == 1.0)
