"""A fusion learned on the labeled sources: how the label-free views' evidence relates to anomalies, applied to the
target (the idea of MetaOD, Zhao, Rossi and Akoglu, NeurIPS 2021, and of MetaEns: labeled datasets teach which
unsupervised detectors to trust on an unlabeled one, from what their scores look like there).

Every view (the LLM's event judgment, severity, keywords, rarity, PCA, Invariant Mining, new events, and the vote of
those views, ``fusionlog-vote``: their label-free decision) is computed on each system from that system's own
unlabeled windows, the sources exactly as the target, and each window gets two
kinds of **system-agnostic evidence** per view, which name no event and no system:

- ``surprise``: ``-log10`` of the share of the system's windows that the view scores at least as high as this one
  (the window's upper-tail share, ties shared): 2 for a window in its system's top 1 %, about 0.3 for one whose
  score half the windows reach. A view's raw scores mean different things on different systems; how unusual a
  window is among its own system's windows means the same.
- ``flag``: the view's own label-free cut, weighed by how selective it is there: ``-log10`` of the share of the
  system's windows the view flags, on the windows it flags, else 0. A view that flags most windows of a system
  says little of any one of them (a warning logged in half the windows), one that flags 1 % says much.

A view that does not apply to a system (severity without levels, the composition views on single-line windows,
Invariant Mining's relations on windows that are not sessions of an identifier, new events without time) gives 0
there, as does a view that scores every window alike. No feature identifies the system (its window size, its
kind, which views apply): with a handful of source systems such a feature would learn each source's anomaly rate,
and an unseen system's value lies outside what was learned.

**The features** (``layout``): ``ranked``, the default, orders each window's views by their evidence and keeps the
:data:`RANKS` strongest of each kind, whichever views they are: the combiner learns how much surprise, and how many
views agreeing, make an anomaly, not which view to trust. With two or three labeled systems a per-view weight is
learned only for the views that vary on them (severity never varies on event-sequence sources, so a per-view
combiner ignores it on a target with levels); ``per-view`` (each view's own evidence) is the variant that does
learn them.

The combiner (scikit-learn) is fitted on the pooled windows of the labeled sources, each source weighing the same
in total (a system of 5,000 windows does not outweigh one of 2,000): ``logistic`` (L2 logistic regression: a
weight is a log-odds per unit of evidence, so each window's log-odds splits into the views' contributions) or
``boosting`` (gradient-boosted trees, every feature constrained monotone increasing: more evidence never lowers
the score). Its probability is calibrated on the sources by cross-validation (``CalibratedClassifierCV``, sigmoid).

**The cut** comes from the sources, never from the target: the probability at which the mean F1 over the sources,
each scored out of fold (5-fold, stratified by system and label, repeated 3 times with fixed shuffles), is highest
(the middle of the widest interval of such cuts, :func:`best_cut`). The combiner does not depend on the run's
seed (the small model's): the same sources give the same combiner and cut. Windows within :data:`UNDECIDED` of
the cut are counted as undecided (a CPU or dtype change could flip them); they keep the side they fall on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

# the label-free views, and the vote: the label-free decision of the others (``fusionlog-vote``), a view too
VIEWS = ("llm-events", "severity", "keywords", "rarity", "pca", "invariants", "new-events", "fusionlog-vote")
FEATURES = ("surprise", "flag")
KINDS = ("logistic", "boosting")
LAYOUTS = ("ranked", "per-view")
RANKS = 3  # the ranked layout: the three strongest views' evidence of each kind
FOLDS = 5
REPEATS = 3  # the cut's cross-validation is repeated this many times (fixed shuffles) and its F1 curves averaged
UNDECIDED = 0.01  # |P - cut| below this: undecided (counted and reported)
VERSION = "combiner-v4"  # v2: the vote among the views; v3: the cut in the middle of the best interval; v4: its
# cross-validation repeated, fixed shuffles, on a grid of cuts; no early stopping (no randomness left)

Evidence = dict[str, np.ndarray]  # feature kind -> windows x VIEWS


@dataclass
class SystemViews:
    """The views' scores and own-cut flags on one system's windows, and which views apply there."""

    system: str
    ids: list[str]
    scores: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    applies: dict[str, bool]
    labels: np.ndarray | None = None  # the sources' labels (never the target's)


def tail_share(scores: np.ndarray) -> np.ndarray:
    """Per window, the share of the windows whose score is at least its own (1 for the lowest score)."""
    s = np.asarray(scores, np.float64)
    if not len(s):
        return s
    return (len(s) - np.searchsorted(np.sort(s), s, side="left")) / len(s)


def evidence(sv: SystemViews) -> Evidence:
    """Per feature kind (:data:`FEATURES`), the windows x :data:`VIEWS` matrix of one system's evidence (module
    docstring): 0 where a view does not apply or scores every window alike."""
    n = len(sv.ids)
    out = {f: np.zeros((n, len(VIEWS))) for f in FEATURES}
    for j, v in enumerate(VIEWS):
        s, f = np.asarray(sv.scores[v], np.float64), np.asarray(sv.flags[v], bool)
        if not (sv.applies.get(v, False) and n > 0 and len(np.unique(s)) > 1):
            continue
        out["surprise"][:, j] = -np.log10(tail_share(s))
        share = float(f.mean())
        if 0 < share < 1:
            out["flag"][:, j] = np.where(f, -np.log10(share), 0.0)
    return out


def feature_names(layout: str = "ranked") -> list[str]:
    """``ranked``: the :data:`RANKS` strongest views' evidence of each kind; ``per-view``: each view's own."""
    if layout == "ranked":
        return [f"{f}#{k + 1}" for f in FEATURES for k in range(RANKS)]
    if layout == "per-view":
        return [f"{f}:{v}" for f in FEATURES for v in VIEWS]
    raise ValueError(f"unknown feature layout {layout!r}: one of {', '.join(LAYOUTS)}")


def design(ev: Evidence, layout: str = "ranked") -> np.ndarray:
    """The windows x :func:`feature_names` matrix from a system's evidence."""
    feature_names(layout)  # an unknown layout raises
    if layout == "per-view":
        return np.hstack([ev[f] for f in FEATURES])
    return np.hstack([-np.sort(-ev[f], axis=1)[:, :RANKS] for f in FEATURES])


def attribute(ev: Evidence, weights: dict[str, float], layout: str = "ranked") -> dict[str, np.ndarray]:
    """Per view, its share of each window's log-odds under a linear combiner's ``weights`` (feature name -> weight):
    in the ``ranked`` layout a view takes the weight of the rank its evidence holds on that window (ties: the view
    listed first in :data:`VIEWS` ranks first, as in :func:`design`, whose sorted values are the same)."""
    n = len(next(iter(ev.values())))
    out = {v: np.zeros(n) for v in VIEWS}
    for f in FEATURES:
        if layout == "per-view":
            for j, v in enumerate(VIEWS):
                out[v] += weights.get(f"{f}:{v}", 0.0) * ev[f][:, j]
            continue
        order = np.argsort(-ev[f], axis=1, kind="stable")
        for k in range(RANKS):
            col = order[:, k]
            val = weights.get(f"{f}#{k + 1}", 0.0) * ev[f][np.arange(n), col]
            for j, v in enumerate(VIEWS):
                out[v] += np.where(col == j, val, 0.0)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


@dataclass
class Combiner:
    """A fitted combiner: the calibrated scikit-learn model (never pickled: it is refitted from the stored training
    set, :func:`evidence_table`), the logistic model's weights, the cut and how each source fared at it."""

    kind: str
    layout: str
    cut: float
    model: object = field(repr=False)  # the fitted, calibrated scikit-learn estimator
    weights: dict[str, float] | None = None  # logistic: log-odds weight per feature (the uncalibrated fit)
    intercept: float | None = None
    sources: dict[str, dict] = field(default_factory=dict)  # per source: windows, anomalous, out-of-fold F1 at cut

    def proba(self, ev: Evidence) -> np.ndarray:
        x = design(ev, self.layout)
        return self.model.predict_proba(x)[:, 1] if len(x) else np.zeros(0)

    def contributions(self, ev: Evidence) -> dict[str, np.ndarray]:
        """Per view, its share of each window's log-odds: logistic, weight x evidence (:func:`attribute`); trees,
        how far the calibrated log-odds fall when that view's evidence is set to 0."""
        if self.weights is not None:
            return attribute(ev, self.weights, self.layout)
        full = _logit(self.proba(ev))
        out = {}
        for j, v in enumerate(VIEWS):
            without = {f: m.copy() for f, m in ev.items()}
            for m in without.values():
                m[:, j] = 0.0
            out[v] = full - _logit(self.proba(without))
        return out

    def to_json(self) -> dict:
        return {"version": VERSION, "kind": self.kind, "layout": self.layout, "features": feature_names(self.layout),
                "cut": self.cut, "weights": self.weights, "intercept": self.intercept, "sources": self.sources}


def _estimator(kind: str, n_features: int):  # noqa: ANN202 (a scikit-learn classifier)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=5000)
    if kind == "boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.1, min_samples_leaf=40,
                                              early_stopping=False, monotonic_cst=[1] * n_features, random_state=0)
    raise ValueError(f"unknown combiner {kind!r}: one of {', '.join(KINDS)}")


SYSTEM_WEIGHT = 1000.0  # each labeled system's windows weigh this much in all, however many they are


def _weights(systems: np.ndarray) -> np.ndarray:
    """Each window weighs :data:`SYSTEM_WEIGHT` / (its system's windows): every source counts the same, and the
    regularisation's strength does not depend on how many windows the sources have."""
    _, inv, counts = np.unique(systems, return_inverse=True, return_counts=True)
    return SYSTEM_WEIGHT / counts[inv]


GRID = np.round(np.arange(1, 200) / 200, 3)  # the cuts tried: 0.005 ... 0.995


def best_cut(p: np.ndarray | list[np.ndarray], y: np.ndarray, systems: np.ndarray) -> tuple[float, float]:
    """The probability cut (on :data:`GRID`) with the highest mean F1 over the systems, each scored at the same cut,
    and that F1; ``p`` may be several out-of-fold predictions of the same windows (repeated cross-validation), whose
    F1 curves are averaged. The best F1 often holds over an interval of cuts (a gap between the sources'
    anomalies and the rest); the cut is the middle of the widest such interval, not its edge, which would be decided
    by which windows a fold happened to hold out."""
    runs = [p] if isinstance(p, np.ndarray) else list(p)
    groups = [systems == s for s in np.unique(systems)]
    curve = np.mean([[np.mean([_f1(y[g], q[g] >= c) for g in groups]) for c in GRID] for q in runs], axis=0)
    best = float(curve.max())
    on = np.isclose(curve, best, rtol=0.0, atol=1e-9)
    spans, start = [], None
    for j, hit in enumerate([*on, False]):
        if hit and start is None:
            start = j
        elif not hit and start is not None:
            spans.append((j - start, GRID[start], GRID[j - 1]))
            start = None
    _, lo, hi = max(spans)
    return float(round((lo + hi) / 2, 4)), best


EVIDENCE_COLUMNS = [f"{f}:{v}" for f in FEATURES for v in VIEWS]


def evidence_table(train: list[SystemViews]) -> pa.Table:
    """The labeled systems' evidence as one table (system, label, one column per view and kind): what a combiner
    is fitted on, kept in the run so that a later month's detect refits the same one."""
    train = [s for s in train if s.labels is not None]
    ev = [evidence(s) for s in train]
    x = np.vstack([np.hstack([e[f] for f in FEATURES]) for e in ev]) if ev else np.zeros((0, len(EVIDENCE_COLUMNS)))
    cols = {"system": pa.array([s.system for s in train for _ in s.ids], pa.string()),
            "label": pa.array(np.concatenate([np.asarray(s.labels, np.int8) for s in train]) if train else [],
                              pa.int8())}
    cols.update({n: pa.array(x[:, j], pa.float64()) for j, n in enumerate(EVIDENCE_COLUMNS)})
    return pa.table(cols)


def _table_evidence(table: pa.Table) -> Evidence:
    return {f: np.column_stack([table[f"{f}:{v}"].to_numpy() for v in VIEWS]) for f in FEATURES}


def fit(table: pa.Table, kind: str = "logistic", layout: str = "ranked") -> Combiner:
    """Fit a combiner on an :func:`evidence_table` (module docstring); a system with one class only is left out.
    Deterministic: the same sources give the same combiner and cut, whatever the run's seed (which is the small
    model's)."""
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import RepeatedStratifiedKFold

    systems = np.array(table["system"].to_pylist(), dtype=str)
    y = table["label"].to_numpy().astype(np.int64)
    keep = np.zeros(len(y), bool)
    for s in np.unique(systems):
        g = systems == s
        keep |= g & (0 < y[g].sum() < g.sum())
    if not keep.any():
        raise ValueError("the learned fusion needs a labeled source with both normal and anomalous windows")
    x = design(_table_evidence(table), layout)[keep]
    y, systems = y[keep], systems[keep]
    w = _weights(systems)
    base = _estimator(kind, x.shape[1])
    model = CalibratedClassifierCV(clone(base), method="sigmoid", cv=FOLDS).fit(x, y, sample_weight=w)
    oof = [np.zeros(len(y)) for _ in range(REPEATS)]
    strata = np.char.add(systems, y.astype(str))
    cv = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=0)
    for k, (tr, te) in enumerate(cv.split(x, strata)):
        m = CalibratedClassifierCV(clone(base), method="sigmoid", cv=3).fit(x[tr], y[tr], sample_weight=w[tr])
        oof[k // FOLDS][te] = m.predict_proba(x[te])[:, 1]
    cut, _ = best_cut(oof, y, systems)
    weights = intercept = None
    if kind == "logistic":
        raw = clone(base).fit(x, y, sample_weight=w)
        weights = dict(zip(feature_names(layout), map(float, raw.coef_[0]), strict=True))
        intercept = float(raw.intercept_[0])
    per = {}
    for s in np.unique(systems):
        g = systems == s
        per[str(s)] = {"windows": int(g.sum()), "anomalous": int(y[g].sum()),
                       "f1_out_of_fold": float(np.mean([_f1(y[g], q[g] >= cut) for q in oof]))}
    return Combiner(kind, layout, cut, model, weights, intercept, per)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float((pred & (y == 1)).sum())
    denom = float(pred.sum() + (y == 1).sum())
    return 2 * tp / denom if denom else 0.0


def stored_training(run: Path, method: str) -> pa.Table:
    """The evidence table a finished run kept for ``method`` (``modes/<method>/combiner_train/``)."""
    import pyarrow.parquet as pq

    from fusionlog.rundir import method_table_dir

    d = method_table_dir(run, method, "combiner_train")
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no labeled source in this run and no stored training set of {method}'s "
                                "combiner (run `fusionlog run` with labeled sources first)")
    return pq.read_table(d)
