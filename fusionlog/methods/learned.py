"""``fusionlog``: the label-free views fused by a combiner learned on the labeled sources (:mod:`fusionlog.combine`).

The views are registered methods (:data:`fusionlog.combine.VIEWS`), computed on each source from its own unlabeled
windows (:meth:`Artifacts.of_system`) exactly as on the target; the sources' labels teach the combiner how their
evidence relates to anomalies, and its cut; the target's labels are never read. ``fusionlog-boosted`` is the same
with monotone gradient-boosted trees. Each window's scores row says which views flagged it and each view's share
of the combined log-odds (``flagged_by``, ``evidence``).

The combiner's training set (the sources' features, labels and system) is kept beside the scores
(``modes/<method>/combiner_train/``, Parquet) so that ``fusionlog detect`` on a later month refits the
same combiner (deterministic for the seed) without the sources' windows; its weights and cut are in the notes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.combine import FEATURES, VIEWS, SystemViews
from fusionlog.methods import Artifacts, Method, Needs, get, register

SESSION_VIEWS = ("rarity", "pca")  # statistics of a window's composition: they apply where windows are sessions
RELATION_VIEWS = ("invariants",)  # count relations: sessions of an identifier only (a workflow, not a chunk)


def applies(art: Artifacts) -> dict[str, bool]:
    """Which views mean something on ``art``'s target system, from its structure alone: severity where a line logs
    a level, the composition views where windows are sessions, the count relations where they are sessions of an
    identifier; the LLM's view, keywords and new events everywhere (a view that scores every window alike is
    left out by the features)."""
    from fusionlog.events import read_events
    from fusionlog.experiment import window_kinds

    sessions = get("fusionlog-vote").sessions(art)  # type: ignore[attr-defined]
    levels = set(read_events(art.run, art.target)["max_level"].to_pylist()) - {"unknown"}
    identified = sessions and window_kinds(art.exp).get(art.target) == "session"
    return {v: (bool(levels) if v == "severity" else sessions if v in SESSION_VIEWS
                else identified if v in RELATION_VIEWS else True) for v in VIEWS}


def system_views(art: Artifacts, system: str, labeled: bool) -> SystemViews:
    """The views on ``system``'s windows (the target, or a source seen as one); its labels where ``labeled``."""
    a = art.of_system(system)
    scores = {v: a.scores(v)["score"].to_numpy().astype(np.float64) for v in VIEWS}
    flags = {v: a.scores(v)["label"].to_numpy().astype(bool) for v in VIEWS}
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
    """The label-free views, weighed by a logistic combiner learned on the labeled sources."""

    needs = Needs(models=("general",), judge=True, source_views=True)
    kind = "logistic"
    layout = "ranked"
    cut = ("the combiner's calibrated probability at the cut with the best mean F1 over the labeled sources, each "
           "scored out of fold")

    def hash_inputs(self, exp: object) -> object:
        from fusionlog.combine import FOLDS, RANKS, UNDECIDED, VERSION

        return {"kind": self.kind, "layout": self.layout, "views": VIEWS, "features": FEATURES, "ranks": RANKS,
                "folds": FOLDS, "undecided": UNDECIDED,
                "version": VERSION, "views_in": {v: get(v).hash_inputs(exp) for v in VIEWS}}

    def sources(self, art: Artifacts) -> list[SystemViews]:
        """The labeled sources' views (a source without labels on every window is left out)."""
        return [sv for s in art.exp.sources if (sv := system_views(art, s, labeled=True)).labels is not None]

    def score(self, art: Artifacts) -> pa.Table:
        from fusionlog.combine import UNDECIDED, evidence, evidence_table, fit, stored_training

        train = art.cached(("combiner-train",), lambda: self.sources(art))
        table = evidence_table(train) if train else stored_training(art.run, self.name)  # detect: the run's set
        comb = fit(table, self.kind, self.layout, art.exp.run.seed)
        tv = system_views(art, art.target, labeled=False)
        ev = evidence(tv)
        p = comb.proba(ev)
        label = p >= comb.cut
        contrib = comb.contributions(ev)
        flagged = [[v for v in VIEWS if tv.applies[v] and tv.flags[v][i]] for i in range(len(p))]
        evid = [{v: float(contrib[v][i]) for v in VIEWS} for i in range(len(p))]
        art.notes[self.name] = {
            "cut": self.cut, "combiner": comb.to_json(), "applies": tv.applies, "flagged": int(label.sum()),
            "windows": len(p), "undecided": int((np.abs(p - comb.cut) < UNDECIDED).sum()),
            "flagged_share": float(label.mean()) if len(p) else 0.0,
            "views_behind_flags": _views_behind(contrib, label),
            "view_flagged_share": {v: float(tv.flags[v].mean()) if len(p) else 0.0 for v in VIEWS},
            "training_windows": table.num_rows}
        from fusionlog.methods.fused import CHECKED, agreement

        art.notes[self.name]["checked"] = {v: agreement(art.scores(v)["label"].to_numpy().astype(bool), label)
                                           for v in CHECKED}  # the small model, checked without labels
        art.tables.setdefault(self.name, {})["combiner_train"] = table  # written by the detect stage
        return art.table(p, "combiner", labels=label, flagged_by=flagged, evidence=evid)


def _views_behind(contrib: dict[str, np.ndarray], label: np.ndarray) -> dict[str, int]:
    """Per view, on how many flagged windows it contributed the most to the log-odds."""
    if not label.any():
        return {}
    views = list(contrib)
    m = np.vstack([contrib[v] for v in views])[:, label]
    lead = np.argmax(m, axis=0)
    return {views[k]: int((lead == k).sum()) for k in range(len(views)) if (lead == k).any()}


@register("fusionlog-boosted")
class BoostedFusion(LearnedFusion):
    """The label-free views, weighed by monotone gradient-boosted trees learned on the labeled sources."""

    kind = "boosting"


@register("fusionlog-per-view")
class PerViewFusion(LearnedFusion):
    """The label-free views, each with a logistic weight of its own learned on the labeled sources."""

    layout = "per-view"
