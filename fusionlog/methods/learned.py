"""``fusionlog``: the label-free views fused by a combiner learned on the labeled sources (:mod:`fusionlog.combine`).

The views are registered methods (:data:`fusionlog.combine.VIEWS`, the vote of the others among them), computed on
each source from its own unlabeled windows (:meth:`Artifacts.of_system`) exactly as on the target; the sources'
labels teach the combiner how their evidence relates to anomalies, and its cut; the target's labels are never read.

**The gate**: windows are sessions of an identifier (a block, an instance, a job) or cut from a stream of lines
(single lines, fixed-size or time windows), and evidence relates to anomalies differently in the two: an anomalous
session is one that a selective view flags alone (a broken count relation), an anomalous line of a sampled log one
that two unselective views flag together. Where no labeled source has windows of the target's family, what the
sources teach does not apply (measured: docs/transfer.md), and ``fusionlog`` gives the vote's decision, saying so;
there a view that flags more than half of the target's windows does not vote (what holds in most windows of a system
is not evidence of an anomaly there). The vote decides too where the combiner does no better out of fold than
flagging every window (it has learned nothing from the sources).
``fusionlog-ungated`` has no gate; ``fusionlog-logistic`` has a logistic combiner. Each window's scores row says which
views flagged it and each view's share of the combined log-odds (``flagged_by``, ``evidence``; the views' scores
where the vote decides).

The combiner's training set (the sources' evidence, labels and system) is kept beside the scores
(``modes/<method>/combiner_train/``, Parquet) so that ``fusionlog detect`` on a later month refits the same combiner
(the fit is deterministic) without the sources' windows; its cut, the sources' out-of-fold F1 at it and (logistic)
its weights are in the notes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from fusionlog.combine import FEATURES, VIEWS, SystemViews
from fusionlog.methods import Artifacts, Method, Needs, get, register

if TYPE_CHECKING:
    from fusionlog.config import ExperimentConfig

VOTE = "fusionlog-vote"
MOST = 0.5  # where the vote decides, a view that flags more than half the windows does not vote (module docstring)
SESSION_VIEWS = ("rarity", "pca")  # statistics of a window's composition: they apply where windows are sessions
RELATION_VIEWS = ("invariants",)  # count relations: sessions of an identifier only (a workflow, not a chunk)


def applies(art: Artifacts) -> dict[str, bool]:
    """Which views mean something on ``art``'s target system, from its structure alone: severity where a line logs
    a level, the composition views where windows are sessions, the count relations where they are sessions of an
    identifier; the LLM's view, keywords and new events everywhere (a view that scores every window alike is
    left out by the features)."""
    from fusionlog.events import read_events
    from fusionlog.experiment import window_kinds

    sessions = get(VOTE).sessions(art)  # type: ignore[attr-defined]
    levels = set(read_events(art.run, art.target)["max_level"].to_pylist()) - {"unknown"}
    identified = sessions and window_kinds(art.exp).get(art.target) == "session"
    return {v: (bool(levels) if v == "severity" else sessions if v in SESSION_VIEWS
                else identified if v in RELATION_VIEWS else True) for v in VIEWS}


def family(exp: ExperimentConfig, system: str) -> str:
    """``sessions`` (windows are sessions of an identifier: a block, an instance, a job) or ``streams`` (windows cut
    from a stream of lines: single lines, fixed-size or time windows): what the learned fusion transfers within."""
    from fusionlog.experiment import window_kinds

    return "sessions" if window_kinds(exp).get(system) == "session" else "streams"


def system_views(art: Artifacts, system: str, labeled: bool) -> SystemViews:
    """The views on ``system``'s windows (the target, or a source seen as one); its labels where ``labeled``."""
    a = art.of_system(system)
    scores, flags = {}, {}
    for v in VIEWS:
        if v == VOTE:  # its decision (its scores table also checks the small model, which a source does not have)
            _, d = get(v).decide(a)  # type: ignore[attr-defined]
            scores[v], flags[v] = np.asarray(d.score, np.float64), np.asarray(d.label, bool)
        else:
            scores[v] = a.scores(v)["score"].to_numpy().astype(np.float64)
            flags[v] = a.scores(v)["label"].to_numpy().astype(bool)
    labels = None
    if labeled:
        from fusionlog.train.data import read_windows

        t = read_windows(art.run, system, ["window_id", "label"])
        by_id = dict(zip(t["window_id"].to_pylist(), t["label"].to_pylist(), strict=True))
        got = [by_id[i] for i in a.ids]
        labels = None if any(x is None for x in got) else np.array(got, np.int8)
    return SystemViews(system, a.ids, scores, flags, applies(a), labels)


@register("fusionlog")
class LearnedFusion(Method):
    """The label-free views and their vote, weighed by monotone boosted trees learned on the labeled sources; the
    vote where no source has windows of the target's family."""

    needs = Needs(models=("general",), judge=True, source_views=True)
    kind = "boosting"
    layout = "ranked"
    gated = True  # no source of the target's family: the vote decides
    cut = ("the combiner's calibrated probability at the cut with the best mean F1 over the labeled sources, each "
           "scored out of fold (the vote's decision where no source has windows of the target's family)")

    def hash_inputs(self, exp: object) -> object:
        from fusionlog.combine import FOLDS, RANKS, REPEATS, UNDECIDED, VERSION

        return {"kind": self.kind, "layout": self.layout, "gated": self.gated, "views": VIEWS, "features": FEATURES,
                "ranks": RANKS, "folds": FOLDS, "repeats": REPEATS, "undecided": UNDECIDED, "version": VERSION,
                "fallback": {"vote": get(VOTE).hash_inputs(exp), "most": MOST, "unlearned": "flag-all-v1"},
                "views_in": {v: get(v).hash_inputs(exp) for v in VIEWS}}

    def source_systems(self, exp: ExperimentConfig) -> list[str]:
        """The sources whose views it reads: every one, or (gated) none where no source has windows of the target's
        family (the vote decides there; the sources' events need not be triaged)."""
        fam = family(exp, exp.target)
        return list(exp.sources) if not self.gated or any(family(exp, s) == fam for s in exp.sources) else []

    def sources(self, art: Artifacts) -> list[SystemViews]:
        """The labeled sources' views (a source without labels on every window is left out); none where the run
        holds no source's windows (``fusionlog detect`` on a later month: the finished run's training set is read)."""
        from fusionlog.rundir import table_dir

        return [sv for s in self.source_systems(art.exp) if table_dir(art.run, "windows", s).is_dir()
                and (sv := system_views(art, s, labeled=True)).labels is not None]

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.combine import UNDECIDED, evidence, evidence_table, fit, stored_training
        from fusionlog.methods.fused import CHECKED, agreement

        fam = family(art.exp, art.target)
        if self.source_systems(art.exp):
            train = art.cached(("combiner-train",), lambda: self.sources(art))
            table = evidence_table(train) if train else stored_training(art.run, self.name)  # detect: the run's set
        else:
            table = evidence_table([])
        art.tables.setdefault(self.name, {})["combiner_train"] = table  # written by the detect stage
        kin = [s for s in sorted(set(table["system"].to_pylist())) if family(art.exp, s) == fam]  # sources like it
        tv = system_views(art, art.target, labeled=False)
        flagged_views = [[v for v in VIEWS if tv.applies[v] and tv.flags[v][i]] for i in range(len(tv.ids))]
        notes = {"cut": self.cut, "applies": tv.applies, "family": fam, "windows": len(tv.ids),
                 "view_flagged_share": {v: float(tv.flags[v].mean()) if len(tv.ids) else 0.0 for v in VIEWS},
                 "training_windows": table.num_rows, "sources": sorted(set(table["system"].to_pylist())),
                 "sources_of_its_family": kin}
        if not table.num_rows or (self.gated and not kin):  # the sources teach about another family: the vote
            _, d = get(VOTE).decide(art, most=MOST)  # type: ignore[attr-defined]
            label = np.asarray(d.label, bool)
            art.notes[self.name] = {**notes, "combiner": None, "flagged": int(label.sum()), "sources": art.exp.sources,
                                    "why_vote": f"no labeled source has windows of the target's family ({fam})",
                                    "voting": d.voting}
            return art.table(d.score, "vote", labels=label, flagged_by=flagged_views,
                             evidence=[{v: float(tv.scores[v][i]) for v in VIEWS if tv.applies[v]}
                                       for i in range(len(tv.ids))])
        comb = fit(table, self.kind, self.layout)
        if not learned_anything(comb):  # the sources' labels are no better predicted than by flagging every window
            _, d = get(VOTE).decide(art, most=MOST)  # type: ignore[attr-defined]
            label = np.asarray(d.label, bool)
            art.notes[self.name] = {**notes, "combiner": None, "flagged": int(label.sum()), "voting": d.voting,
                                    "learned": comb.to_json(),
                                    "why_vote": "out of fold, the combiner predicts the sources' labels no better "
                                                "than flagging every window (labels the logs cannot tell apart)"}
            return art.table(d.score, "vote", labels=label, flagged_by=flagged_views,
                             evidence=[{v: float(tv.scores[v][i]) for v in VIEWS if tv.applies[v]}
                                       for i in range(len(tv.ids))])
        ev = evidence(tv)
        p = comb.proba(ev)
        label = p >= comb.cut
        contrib = comb.contributions(ev)
        art.notes[self.name] = {
            **notes, "combiner": comb.to_json(), "flagged": int(label.sum()),
            "undecided": int((np.abs(p - comb.cut) < UNDECIDED).sum()),
            "flagged_share": float(label.mean()) if len(p) else 0.0,
            "views_behind_flags": _views_behind(contrib, label),
            "checked": {v: agreement(art.scores(v)["label"].to_numpy().astype(bool), label) for v in CHECKED}}
        return art.table(p, "combiner", labels=label, flagged_by=flagged_views,
                         evidence=[{v: float(contrib[v][i]) for v in VIEWS} for i in range(len(p))])


def learned_anything(comb: object) -> bool:
    """Whether the combiner predicts its sources' labels, out of fold, better than flagging every window does (mean
    F1 over the sources): where it does not, the logs do not tell their labels apart (e.g. labels given per file
    rather than per window) and the vote decides."""
    src = comb.sources  # type: ignore[attr-defined]
    flag_all = [2 * x["anomalous"] / (x["windows"] + x["anomalous"]) for x in src.values()]
    return float(np.mean([x["f1_out_of_fold"] for x in src.values()])) > float(np.mean(flag_all)) + 1e-6


def _views_behind(contrib: dict[str, np.ndarray], label: np.ndarray) -> dict[str, int]:
    """Per view, on how many flagged windows it contributed the most to the log-odds."""
    if not label.any():
        return {}
    views = list(contrib)
    m = np.vstack([contrib[v] for v in views])[:, label]
    lead = np.argmax(m, axis=0)
    return {views[k]: int((lead == k).sum()) for k in range(len(views)) if (lead == k).any()}


@register("fusionlog-ungated")
class UngatedFusion(LearnedFusion):
    """``fusionlog`` without its gate: the combiner learned on the sources whatever their windows."""

    gated = False


@register("fusionlog-logistic")
class LogisticFusion(LearnedFusion):
    """``fusionlog`` with a logistic combiner in place of the boosted trees."""

    kind = "logistic"
