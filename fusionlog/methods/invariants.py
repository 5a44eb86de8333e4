"""Label-free baseline: Invariant Mining (Lou et al., USENIX ATC 2010; loglizer's ``InvariantsMiner``).

A system's workflow ties the counts of its events in a session: a block allocated once is received by three
datanodes and acknowledged three times, an opened session is closed once. Each such tie is a sparse linear
relation with small integer coefficients, ``sum_i theta_i * count_i = 0``, that holds in nearly every window of
the target; a window that breaks one is anomalous. Mined on the target's own windows, with no labels:

1. **one-event invariants**: an event absent from at least ``SUPPORT`` of the windows ("count(e) = 0"; rarity's
   rule at 2 %), read from the events' document frequency;
2. **relations** of two or three events (``LONGEST``) are searched among the events present in more than
   ``1 - SUPPORT`` of the windows (a rarer event's relations hold trivially), the ``MAX_EVENTS`` most frequent,
   over the windows' distinct count vectors of those events with their multiplicities (memory grows with the
   distinct vectors, not the windows or the system's events). The dimension ``r`` of their invariant space: the
   right singular vectors of that count matrix (the eigenvectors of its Gram matrix, so the null space counts
   too), from the smallest singular value up, that the windows satisfy (``|x . v| < EPSILON``) in at least
   ``SUPPORT`` of them. Then, for each set of two, then three events (none
   holding a relation already found), until ``r`` are found: the direction of its counts' smallest singular
   value, scaled to small integers (divided by its smallest entry, times 1, 2 or 3, rounded), is kept when it
   holds in at least ``SUPPORT`` of the windows;
3. a window's score is ``1 - 0.5 ** b`` for the ``b`` invariants it breaks: at least 0.5 (the shared cut) when it
   breaks one.

The parameters are loglizer's defaults (98 %, 0.5, scales 1-3). Loglizer estimates ``r`` over all events at once
and searches every set of events, on the dense windows x events matrix; here rare events are one-event invariants
read directly and the relations' space is estimated among the frequent events, so memory stays bounded on a
system of thousands of events. Its published F1 on full HDFS is 0.92 (shared/papers.md).

A broken relation of two or more events is evidence no event-level view can check (the events are the system's
common ones; what is wrong is how many of each, often one missing): the fusion takes it alone
(:mod:`fusionlog.methods.fused`). Meant for session windows; it reads no labels and names no system's events.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register
from fusionlog.methods.rarity import document_frequency

SUPPORT = 0.98  # an invariant holds in at least this share of the target's windows
EPSILON = 0.5  # |sum theta_i count_i| below this: the window satisfies the invariant (counts are integers)
LONGEST = 3  # events per invariant at most
SCALES = (1, 2, 3)  # integer multiples tried when a direction is turned into small integer coefficients
MAX_EVENTS = 50  # relations are searched among this many of the most frequent events (C(50, 3) = 19,600 sets)


@dataclass(frozen=True)
class Invariant:
    """``sum(coef[i] * count(events[i])) == 0`` holds in ``support`` of the target's windows."""

    events: tuple[int, ...]  # template ids
    coef: tuple[int, ...]
    support: float

    def to_json(self) -> dict:
        return {"events": list(self.events), "coef": list(self.coef), "support": self.support}


def count_vectors(template_ids: list[list[int]], events: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows' counts of ``events`` (the columns; other events ignored) as (distinct count vectors, their
    multiplicities, each window's row among them): memory grows with the distinct vectors, not the windows."""
    col = {t: j for j, t in enumerate(events)}
    rows: dict[tuple, int] = {}
    inverse = np.empty(len(template_ids), np.int64)
    for i, ids in enumerate(template_ids):
        counts: dict[int, int] = {}
        for t in ids:
            if (j := col.get(t)) is not None:
                counts[j] = counts.get(j, 0) + 1
        inverse[i] = rows.setdefault(tuple(sorted(counts.items())), len(rows))
    x = np.zeros((len(rows), len(events)))
    for key, r in rows.items():
        for j, c in key:
            x[r, j] = c
    return x, np.bincount(inverse, minlength=len(rows)).astype(np.float64), inverse


def _held(x: np.ndarray, w: np.ndarray, theta: np.ndarray) -> float:
    """The share of windows (rows weighted by ``w``) that satisfy ``x . theta == 0``."""
    return float(w[np.abs(x @ theta) < EPSILON].sum() / w.sum())


def _integers(v: np.ndarray) -> list[np.ndarray]:
    """``v`` as small integer coefficients: divided by its smallest non-zero magnitude, times each of SCALES."""
    nz = np.abs(v[np.abs(v) > 1e-9])
    return [np.round(v / nz.min() * s) for s in SCALES] if len(nz) else []


def frequent_events(df: dict[int, float], support: float = SUPPORT, max_events: int = MAX_EVENTS) -> list[int]:
    """The events relations are searched among: present in more than ``1 - support`` of the windows, the
    ``max_events`` most frequent (ties by template id), sorted by template id."""
    ranked = sorted((t for t, f in df.items() if f > 1 - support), key=lambda t: (-df[t], t))
    return sorted(ranked[:max_events])


def mine_invariants(template_ids: list[list[int]], support: float = SUPPORT, longest: int = LONGEST,
                    max_events: int = MAX_EVENTS) -> list[Invariant]:
    """The target's invariants (module docstring), in the order found: one-event ones by template id, then
    relations of two and three events."""
    if not template_ids:
        return []
    df = document_frequency(template_ids)
    found = [Invariant((t,), (1,), 1.0 - df[t]) for t in sorted(df) if 1.0 - df[t] >= support]
    events = frequent_events(df, support, max_events)
    if len(events) < 2 or longest < 2:
        return found
    x, w, _ = count_vectors(template_ids, events)
    gram = (x * w[:, None]).T @ x  # the weighted counts' Gram matrix: its eigenvectors are their right singular
    _, vecs = np.linalg.eigh(gram)  # vectors, the null space included (fewer distinct vectors than events too)
    r = 0  # the invariant space among these events: its dimension bounds the search
    for v in vecs.T:  # from the smallest singular value up
        if _held(x, w, v) < support:
            break
        r += 1
    rel: list[tuple[tuple[int, ...], np.ndarray, float]] = []
    for k in range(2, longest + 1):
        for cols in itertools.combinations(range(len(events)), k):
            if len(rel) >= r:
                break
            if any(set(f) <= set(cols) for f, _, _ in rel):
                continue
            idx = list(cols)
            _, vec = np.linalg.eigh(gram[np.ix_(idx, idx)])
            for theta in _integers(vec[:, 0]):
                if np.count_nonzero(theta) == k and (held := _held(x[:, idx], w, theta)) >= support:
                    rel.append((cols, theta, held))
                    break
    return found + [Invariant(tuple(int(events[j]) for j in cols), tuple(int(c) for c in theta), held)
                    for cols, theta, held in rel]


@dataclass
class Breaks:
    """Which windows break the invariants."""

    count: np.ndarray  # per window, the invariants it breaks
    relation: np.ndarray  # per window, whether it breaks a relation of two or more events
    per_invariant: np.ndarray  # per invariant, the windows that break it


def breaks(template_ids: list[list[int]], invariants: list[Invariant]) -> Breaks:
    """The windows that break ``invariants`` (a one-event invariant: the window holds the event)."""
    n = len(template_ids)
    count, per = np.zeros(n, np.int64), np.zeros(len(invariants), np.int64)
    single = {inv.events[0]: j for j, inv in enumerate(invariants) if len(inv.events) == 1}
    for i, ids in enumerate(template_ids):
        for t in set(ids):
            if (j := single.get(t)) is not None:
                count[i] += 1
                per[j] += 1
    many = [j for j, inv in enumerate(invariants) if len(inv.events) > 1]
    relation = np.zeros(n, bool)
    if many:
        events = sorted({e for j in many for e in invariants[j].events})
        col = {t: c for c, t in enumerate(events)}
        theta = np.zeros((len(events), len(many)))
        for m, j in enumerate(many):
            for e, c in zip(invariants[j].events, invariants[j].coef, strict=True):
                theta[col[e], m] = c
        x, _, inverse = count_vectors(template_ids, events)
        b = (np.abs(x @ theta) >= EPSILON)[inverse]  # windows x relations, over the distinct vectors
        count += b.sum(axis=1)
        per[many] = b.sum(axis=0)
        relation = b.any(axis=1)
    return Breaks(count, relation, per)


def target_invariants(art: Artifacts) -> tuple[list[Invariant], Breaks]:
    """The target's invariants and the windows that break them, mined once per run (the baseline's scores and
    the fusion's broken relations read the same)."""
    def compute() -> tuple[list[Invariant], Breaks]:
        ids = art.template_ids()
        invariants = mine_invariants(ids)
        return invariants, breaks(ids, invariants)

    return art.cached("invariants", compute)  # type: ignore[return-value]


@register("invariants")
class InvariantsMethod(Method):
    """The count relations among the target's events that nearly every window keeps, and the windows that break
    one."""

    baseline = True
    cut = "breaks a count relation that holds in >= 98 % of the target's windows (Invariant Mining)"

    def hash_inputs(self, exp: object) -> object:
        return {"support": SUPPORT, "epsilon": EPSILON, "longest": LONGEST, "scales": SCALES,
                "max_events": MAX_EVENTS, "mining": "frequent-space-v2"}

    def score(self, art: Artifacts) -> pa.Table:
        invariants, b = target_invariants(art)
        art.notes[self.name] = {"invariants": [i.to_json() for i in invariants],
                                "windows_breaking": b.per_invariant.tolist()}
        return art.table(1.0 - 0.5 ** b.count, "invariants")
