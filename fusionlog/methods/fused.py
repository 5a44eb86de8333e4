"""``fusionlog-vote``: the views of the target's windows fused without labels (:func:`fusionlog.fusion.majority`),
a hand-set vote that reads no source label; the baseline of the learned fusion (``fusionlog``,
:mod:`fusionlog.methods.learned`), and what the distillation on the agreeing views reads.

The voting views are registered methods, each computed on the target itself with its own label-free cut: the LLM's
event judgment (``llm-events``), ``severity`` (where the system logs levels) and, where windows are sessions of
several events, the statistics of their composition (``rarity``, ``pca``). On one-line windows those two do not
vote: a line's "rarest event" is its own template, and on a line-level log the rare templates are the long tail of
every message kind (detail lines of multi-line reports among them; docs/pipeline.md has the measurement), not
sessions that break the usual composition; both are still scored as baselines. There, where the level field tells
the lines nothing (no line logs a level, or every line the same one), ``keywords`` (severity's rule read from the
message's words: error, fail, fatal ...) votes in severity's place, so that the LLM's view does not decide alone;
where levels tell lines apart it does not vote (the operator's level is the better reading of the same thing, and as
a third message view it outvoted severity where measured: docs/pipeline.md), nor on sessions, where the composition
views read the window. A window is anomalous when a strict majority of the voting views flags it (two voting views:
both), or, where windows are sessions of an identifier (a block, an instance, a job: the window policy ``session``,
or an event-sequence set), when it breaks a count relation among two or more of the target's events (``invariants``,
Invariant Mining): evidence no voting view can check. The events of such a relation are the system's common ones
(each in more than 2 % of the windows); what is wrong is how many of each, often one missing (a block allocated and
received but never acknowledged), so the LLM and severity have nothing to read and their "no" is not evidence
against it, and rarity's rule (a rare event is present) does not apply. A relation is a session's workflow: where
windows cut the log by lines or time, a workflow straddles two windows and breaks the relation in both (on 10-line
chunks of contiguous loghub samples, relations broke in up to 8 % of the windows), so there the relations stay in
the ``invariants`` baseline. Invariant Mining's one-event invariants ("this event is absent from 98 % of the
windows") are rarity's evidence and go through the vote as rarity does. A view that flags every window or none does
not vote; nor does one that Dawid–Skene, from the target alone, finds inverted, where three or more views could
vote (with two, which of them is inverted is not identified: both vote). The transferred small model
(``general-only``, the paper's general branch) is scored beside them and checked against the fused decision (Cohen's
kappa, polarity) but does not vote: on every target measured it flags windows at or near the rate of flagging all of
them, and in a majority of four it pulled the decision below that of three (docs/pipeline.md). The voting views, the
windows flagged on a broken relation, Dawid–Skene's estimates and the check are kept in
``modes/fusionlog-vote/notes.json`` and shown in the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, Needs, get, register

if TYPE_CHECKING:
    from fusionlog.fusion import Decision

VIEWS = ("llm-events", "severity", "keywords", "rarity", "pca")  # the views that vote, each from the target itself
CHECKED = ("general-only",)  # scored beside them and checked against the fused decision (agreement, polarity)
SESSION_VIEWS = ("rarity", "pca")  # statistics of a window's composition: they vote where windows are sessions
MESSAGE_VIEWS = ("keywords",)  # severity read from the words: votes where levels tell nothing and windows are messages
ALONE = ("invariants",)  # in sessions of an identifier, a broken count relation flags a window on its own
MIN_SESSION = 2.0  # windows are sessions when they hold at least this many events (median), not single lines


def agreement(flags: np.ndarray, fused: np.ndarray) -> dict:
    """A view's agreement with the fused decision, without labels: Cohen's kappa, and its polarity (``inverted``
    when kappa < -0.05: it flags what the fusion leaves alone), and the share of windows it flags."""
    from sklearn.metrics import cohen_kappa_score

    both = len(set(flags.tolist())) > 1 and len(set(fused.tolist())) > 1
    kappa = float(cohen_kappa_score(flags, fused)) if both else 0.0
    return {"kappa": kappa, "flagged_share": float(flags.mean()) if len(flags) else 0.0,
            "polarity": "inverted" if kappa < -0.05 else "agrees" if kappa > 0.05 else "no agreement"}


@register("fusionlog-vote")
class FusionLog(Method):
    """The majority of the label-free views: the LLM's event judgment, the target's statistics, severity."""

    needs = Needs(models=("general",), judge=True)
    cut = "a strict majority of the voting views flags the window, each at its own label-free cut"

    def hash_inputs(self, exp: object) -> object:
        return {"views": VIEWS, "checked": CHECKED, "session_views": SESSION_VIEWS, "min_session": MIN_SESSION,
                "message_views": MESSAGE_VIEWS, "alone": {v: get(v).hash_inputs(exp) for v in ALONE},
                "alone_windows": "session", "fusion": "majority-v5"}
        # v2: severity where any line logs a level; v3: broken count relations; v4: keywords where levels tell nothing;
        # v5: a view is left out as inverted only where three or more vote

    def views(self, art: Artifacts) -> list[str]:
        """The views that mean something on this target: severity needs levels; rarity and pca sessions; keywords,
        severity's rule read from the words, stands in for it where the level field tells the windows nothing (no
        line logs a level, or every line the same one) and windows are not sessions: beside the LLM's reading of
        the same messages, not against the composition views."""
        from fusionlog.events import read_events

        sessions = self.sessions(art)
        known = set(read_events(art.run, art.target)["max_level"].to_pylist()) - {"unknown"}  # levels some line logs
        out = []
        for v in VIEWS:
            if v == "severity" and not known:
                continue
            if v in SESSION_VIEWS and not sessions:
                continue
            if v in MESSAGE_VIEWS and (len(known) > 1 or sessions):
                continue
            out.append(v)
        return out

    def sessions(self, art: Artifacts) -> bool:
        """Whether the target's windows are sessions (median at least MIN_SESSION events)."""
        return float(np.median([len(x) for x in art.template_ids()] or [0])) >= MIN_SESSION

    def decide(self, art: Artifacts, most: float | None = None) -> tuple[list[str], Decision]:
        """The candidate views on this target and the fused decision (the distillation's pseudo-labels too). With
        ``most``, a view that flags more than that share of the windows does not vote: what holds in most windows
        of a system is not evidence of an anomaly there (the learned fusion's fallback: ``fusionlog.methods.learned``;
        the vote itself keeps every view, as measured)."""
        from fusionlog.experiment import window_kinds
        from fusionlog.fusion import majority
        from fusionlog.methods.invariants import target_invariants

        names = self.views(art)
        scores = {v: art.scores(v)["score"].to_numpy().astype(np.float64) for v in names
                  if most is None or float(art.scores(v)["label"].to_numpy().mean() if art.ids else 0.0) <= most}
        alone = None
        if self.sessions(art) and window_kinds(art.exp).get(art.target) == "session":
            alone = target_invariants(art)[1].relation
        return names, majority(scores, art.threshold, alone)

    def score(self, art: Artifacts) -> pa.Table:
        names, d = self.decide(art)
        checks = {}
        for v in CHECKED:
            flags = art.scores(v)["label"].to_numpy().astype(bool)
            checks[v] = agreement(flags, d.label)
        alone = d.alone if d.alone is not None else np.zeros(len(d.label), bool)
        beyond = alone & (2 * d.votes <= len(d.voting))  # flagged on the relation alone, not by the majority
        art.notes[self.name] = {"cut": self.cut, "candidates": names, "voting": d.voting, "view_flags": d.flags,
                                "alone": {"views": list(ALONE) if d.alone is not None else [],
                                          "flagged": int(alone.sum()), "beyond_majority": int(beyond.sum())},
                                "estimates": d.fused.summary() if d.fused else None, "checked": checks,
                                "flagged": int(d.label.sum()), "windows": len(d.label)}
        scores = {v: art.scores(v)["score"].to_numpy() for v in d.voting}
        flags = {v: scores[v] >= art.threshold for v in d.voting}
        flagged_by = [[v for v in d.voting if flags[v][i]] + (["invariants"] if alone[i] else [])
                      for i in range(len(d.label))]
        evidence = [{v: float(scores[v][i]) for v in d.voting} for i in range(len(d.label))]
        return art.table(d.score, "fusion", labels=d.label, flagged_by=flagged_by, evidence=evidence)
